# examples/my_node as an Elixir user meets it: a node of someone's own,
# written in ten lines of main() with cn_node_run, called with
# GenServer.call from Elixir.
#
#   CN_BUILD=build/release elixir test_erl/my_node_test.exs
#
# Each test starts its own $CN_BUILD/examples/my_node with a unique name
# (and a unique cookie, or none: then the node reads or makes the cookie
# file in a scratch $HOME, as erl would), under a holder process, and stops
# it with SIGTERM sent to that program's OS pid only.

ExUnit.start(capture_log: true)

defmodule MyNodeTest.Node do
  @moduledoc false

  def exe do
    build =
      System.get_env("CN_BUILD") ||
        Path.join([System.fetch_env!("CN_ROOT"), "build", "release"])

    Path.join([build, "examples", "my_node"])
  end

  def uniq, do: "#{System.unique_integer([:positive])}_#{System.pid()}"

  # The test VM itself as a distributed node (short names), epmd first.
  def ensure_dist do
    unless Node.alive?() do
      System.cmd("epmd", ["-daemon"])
      {:ok, _} = Node.start(:"mnex#{uniq()}", :shortnames)
    end

    :ok
  end

  # Starts my_node NAME [COOKIE] with the given environment; returns
  # %{node:, os_pid:, holder:, log:}.  Called from a test (or its setup):
  # when the test is over, ExUnit runs the on_exit that stops the node
  # with SIGTERM, unless the test stopped it already.
  def start(opts \\ []) do
    ensure_dist()
    name = "mynode#{uniq()}"
    log_dir = Path.expand(Path.join([Path.dirname(exe()), "..", "test-erl", "nodes"]))
    File.mkdir_p!(log_dir)
    log = Path.join(log_dir, name <> ".log")
    cookie = Keyword.get(opts, :cookie)
    args = [exe(), name | if(cookie, do: [cookie], else: [])]
    env = [{~c"CN_NODE_LOG", String.to_charlist(log)} | Keyword.get(opts, :env, [])]
    parent = self()
    holder = spawn(fn -> holder_init(parent, args, env) end)
    ExUnit.Callbacks.on_exit(make_ref(), fn -> if Process.alive?(holder), do: stop(%{holder: holder}) end)

    receive do
      {^holder, :ready, node, os_pid} ->
        if cookie, do: true = Node.set_cookie(node, String.to_atom(cookie))
        %{node: node, os_pid: os_pid, holder: holder, log: log}

      {^holder, :exited, status} ->
        raise "my_node exited with #{status} before it was ready; see #{log}"
    after
      20_000 -> raise "my_node not ready after 20 s; see #{log}"
    end
  end

  # SIGTERM; returns the exit status.
  def stop(%{holder: holder}) do
    ref = make_ref()
    send(holder, {:stop, self(), ref})

    receive do
      {^ref, status} -> status
    after
      15_000 -> :no_exit
    end
  end

  defp holder_init(parent, args, env) do
    port =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :binary,
        :exit_status,
        {:line, 4096},
        args: ["-c", "exec \"$0\" \"$@\" 2>>\"$CN_NODE_LOG\"" | args],
        env: env
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    holder_wait(parent, port, os_pid)
  end

  defp holder_wait(parent, port, os_pid) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        case Regex.run(~r/^cnode: ready as (\S+) on port ([0-9]+)$/, line) do
          [_, node, _port] ->
            send(parent, {self(), :ready, String.to_atom(node), os_pid})
            holder_loop(port, os_pid)

          nil ->
            holder_wait(parent, port, os_pid)
        end

      {^port, {:data, _}} ->
        holder_wait(parent, port, os_pid)

      {^port, {:exit_status, status}} ->
        send(parent, {self(), :exited, status})
    end
  end

  defp holder_loop(port, os_pid) do
    receive do
      {^port, {:data, _}} ->
        holder_loop(port, os_pid)

      {^port, {:exit_status, status}} ->
        receive do
          {:stop, from, ref} -> send(from, {ref, {:exited_before_stop, status}})
        end

      {:stop, from, ref} ->
        System.cmd("kill", ["-TERM", Integer.to_string(os_pid)])

        receive do
          {^port, {:exit_status, status}} -> send(from, {ref, status})
        after
          10_000 ->
            System.cmd("kill", ["-KILL", Integer.to_string(os_pid)])
            send(from, {ref, :no_exit_after_sigterm})
        end
    end
  end

  def cookie, do: "mn" <> Base.encode16(:crypto.strong_rand_bytes(12), case: :lower)

  # Waits until counter answers from a pid other than old.
  def wait_restarted(node, old, tries \\ 500) do
    pid =
      case Supervisor.which_children({:my_node_sup, node}) do
        [{:counter, pid, :worker, _}] when is_pid(pid) -> pid
        _ -> nil
      end

    cond do
      pid != nil and pid != old -> pid
      tries > 0 ->
        Process.sleep(10)
        wait_restarted(node, old, tries - 1)

      true -> raise "counter not restarted"
    end
  end
end

defmodule MyNodeTest do
  use ExUnit.Case, async: false
  alias MyNodeTest.Node, as: MN

  # Each test its own node, stopped when the test is over.
  setup do
    mn = MN.start(cookie: MN.cookie())
    %{mn: mn, counter: {:counter, mn.node}}
  end

  test "the counter answers GenServer.call and cast from Elixir", %{counter: c} do
    assert GenServer.call(c, :get) == {:ok, 0}
    assert GenServer.call(c, {:add, 5}) == {:ok, 5}
    assert GenServer.call(c, {:add, -12}) == {:ok, -7}
    assert GenServer.cast(c, {:add, 10}) == :ok
    assert GenServer.call(c, :get) == {:ok, 3}
    assert GenServer.call(c, {:add, 9_223_372_036_854_775_807}) == {:error, :overflow}
    assert GenServer.call(c, {:add, 1.5}) == {:error, :badarg}
    assert GenServer.call(c, {:add, Bitwise.bsl(1, 70)}) == {:error, :badarg}
    assert GenServer.call(c, :get) == {:ok, 3}
    assert GenServer.call(c, :reset) == {:ok, 3}
    assert GenServer.call(c, :get) == {:ok, 0}
    assert GenServer.call(c, %{"what" => :ever}) == {:error, :unknown_call}
  end

  test "many Elixir callers at once lose no update", %{counter: c} do
    1..50
    |> Enum.map(fn _ -> Task.async(fn -> for _ <- 1..20, do: {:ok, _} = GenServer.call(c, {:add, 1}) end) end)
    |> Enum.each(&Task.await(&1, 30_000))

    assert GenServer.call(c, :get) == {:ok, 1000}
  end

  test "it is a node: ping, a missing name, its supervisor restarts the counter",
       %{mn: mn, counter: c} do
    node = mn.node
    assert Node.ping(node) == :pong

    assert {:noproc, {GenServer, :call, _}} =
             catch_exit(GenServer.call({:no_such_server, node}, :get))

    assert [{:counter, old, :worker, [:my_counter]}] =
             Supervisor.which_children({:my_node_sup, node})

    assert node(old) == node
    assert GenServer.call(c, {:add, 4}) == {:ok, 4}
    ref = Process.monitor(old)
    Process.exit(old, :kill)
    assert_receive {:DOWN, ^ref, :process, ^old, :killed}, 5000
    new = MN.wait_restarted(node, old)
    assert new != old
    assert GenServer.call(c, :get) == {:ok, 0}
  end

  test "SIGTERM stops it with status 0; its monitors fire noconnection", %{mn: mn, counter: c} do
    node = mn.node
    assert GenServer.call(c, :get) == {:ok, 0}
    ref = Process.monitor(c)
    assert MN.stop(mn) == 0
    assert_receive {:DOWN, ^ref, :process, {:counter, ^node}, :noconnection}, 5000
    assert Node.ping(node) == :pang
    # What it logged: timestamped lines through the library's log hook.
    log = File.read!(mn.log)
    assert log =~ ~r/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info cnode: SIGTERM: stopping$/m
    assert log =~ ~r/Z info cnode: ready as #{node} on port [0-9]+$/m
    assert log =~ ~r/Z info cnode: stopped$/m
  end
end

defmodule MyNodeCookieTest do
  use ExUnit.Case, async: false
  alias MyNodeTest.Node, as: MN

  # No cookie given: the node reads $HOME/.erlang.cookie, creating it as
  # erl does (20 letters, mode 0400); the cookie in it is the one to use.
  test "without a cookie it makes and uses ~/.erlang.cookie, as erl does" do
    home = Path.join(System.tmp_dir!(), "my_node_home_#{MN.uniq()}")
    File.mkdir_p!(home)
    env = [{~c"HOME", String.to_charlist(home)}, {~c"XDG_CONFIG_HOME", false}]
    mn = MN.start(env: env)
    file = Path.join(home, ".erlang.cookie")
    cookie = File.read!(file)
    assert cookie =~ ~r/^[A-Z]{20}$/
    assert Bitwise.band(File.stat!(file).mode, 0o777) == 0o400
    assert File.read!(mn.log) =~ "info cnode: created the cookie file #{file}"
    true = Node.set_cookie(mn.node, String.to_atom(cookie))
    assert GenServer.call({:counter, mn.node}, {:add, 2}) == {:ok, 2}
    assert MN.stop(mn) == 0

    # The next start reads the same file and makes no other.
    mn2 = MN.start(env: env)
    assert File.read!(file) == cookie
    refute File.read!(mn2.log) =~ "created the cookie file"
    true = Node.set_cookie(mn2.node, String.to_atom(cookie))
    assert GenServer.call({:counter, mn2.node}, :get) == {:ok, 0}
    assert MN.stop(mn2) == 0
    File.rm_rf!(home)
  end
end
