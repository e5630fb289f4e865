# The node as an Elixir user meets it: Node.connect, Node.ping,
# GenServer.call/cast to kv and echo, exits, monitors and the supervisor.
#
#   CN_BUILD=build/release elixir test_erl/cnode_test.exs
#
# Each module starts its own node program ($CN_BUILD/cnode) with a unique
# name and cookie under a holder process, and stops it with SIGTERM sent to
# that program's OS pid only.

ExUnit.start(capture_log: true)

defmodule CnodeTest.Node do
  @moduledoc false

  def exe do
    build =
      System.get_env("CN_BUILD") ||
        Path.join([System.fetch_env!("CN_ROOT"), "build", "release"])

    Path.join(build, "cnode")
  end

  def uniq, do: "#{System.unique_integer([:positive])}_#{System.pid()}"

  # The test VM itself as a distributed node (short names), epmd first.
  def ensure_dist do
    unless Node.alive?() do
      System.cmd("epmd", ["-daemon"])
      {:ok, _} = Node.start(:"ex#{uniq()}", :shortnames)
    end

    :ok
  end

  # Starts the node program; returns %{node:, cookie:, os_pid:, holder:}.
  # When owner (a pid) dies, the node is killed if it still runs.
  def start(owner \\ nil) do
    ensure_dist()
    name = "cnex#{uniq()}"
    cookie = "ck" <> Base.encode16(:crypto.strong_rand_bytes(12), case: :lower)
    log_dir = Path.join([Path.dirname(exe()), "test-erl", "nodes"])
    File.mkdir_p!(log_dir)
    log = Path.join(log_dir, name <> ".log")
    parent = self()
    # The cookie goes in CNODE_COOKIE, which the node reads and removes
    # from its environment: never on a command line.
    args = [exe(), "--sname", name]
    holder = spawn(fn -> holder_init(parent, args, cookie, log, owner) end)

    receive do
      {^holder, :ready, node, os_pid} ->
        true = Node.set_cookie(node, String.to_atom(cookie))
        %{node: node, cookie: String.to_atom(cookie), os_pid: os_pid, holder: holder}

      {^holder, :exited, status} ->
        raise "cnode exited with #{status} before it was ready; see #{log}"
    after
      20_000 -> raise "cnode not ready after 20 s; see #{log}"
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

  defp holder_init(parent, args, cookie, log, owner) do
    if owner, do: Process.monitor(owner)

    port =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :binary,
        :exit_status,
        {:line, 4096},
        args: ["-c", "exec \"$0\" \"$@\" 2>>\"$CN_NODE_LOG\"" | args],
        env: [
          {~c"CN_NODE_LOG", String.to_charlist(log)},
          {~c"CNODE_COOKIE", String.to_charlist(cookie)}
        ]
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    holder_wait(parent, port, os_pid)
  end

  defp holder_wait(parent, port, os_pid) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        case Regex.run(~r/ready as (\S+) on port ([0-9]+)/, line) do
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

      {:DOWN, _, :process, _, _} ->
        System.cmd("kill", ["-KILL", Integer.to_string(os_pid)])
        holder_loop(port, os_pid)

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

  # Waits until echo answers with a pid other than old.
  def wait_restarted(node, old, tries \\ 500) do
    result =
      try do
        GenServer.call({:echo, node}, :pid, 1000)
      catch
        :exit, reason -> {:exit, reason}
      end

    case result do
      pid when is_pid(pid) and pid != old ->
        pid

      _ when tries > 0 ->
        Process.sleep(10)
        wait_restarted(node, old, tries - 1)

      other ->
        raise "echo not restarted: #{inspect(other)}"
    end
  end
end

defmodule CnodeTest.Server do
  @moduledoc false
  use GenServer

  def init(owner), do: {:ok, owner}
  def handle_call(:boom, _from, owner), do: {:stop, :elixir_boom, owner}
  def handle_call(req, _from, owner), do: {:reply, {:elixir, req}, owner}
  def handle_cast(msg, owner), do: (send(owner, {:cast, msg}); {:noreply, owner})
end

defmodule CnodeTest do
  use ExUnit.Case, async: false
  alias CnodeTest.Node, as: CN

  setup_all do
    cn = CN.start()
    on_exit(fn -> 0 = CN.stop(cn) end)
    %{node: cn.node}
  end

  test "Node.connect and Node.ping", %{node: node} do
    assert Node.connect(node) == true
    assert Node.ping(node) == :pong
    assert node in Node.list(:hidden)
    refute node in Node.list()
  end

  test "kv put, get, keys, delete", %{node: node} do
    kv = {:kv, node}
    for k <- GenServer.call(kv, :keys), do: :ok = GenServer.call(kv, {:delete, k})
    assert GenServer.call(kv, {:put, "a", 1}) == :ok
    assert GenServer.call(kv, {:get, "a"}) == {:ok, 1}
    assert GenServer.call(kv, {:put, :b, %{nested: [1, 2]}}) == :ok
    assert GenServer.call(kv, {:get, :b}) == {:ok, %{nested: [1, 2]}}
    assert Enum.sort(GenServer.call(kv, :keys)) == Enum.sort(["a", :b])
    assert GenServer.call(kv, {:get, ~c"a"}) == :error
    assert GenServer.call(kv, {:delete, "a"}) == :ok
    assert GenServer.call(kv, {:get, "a"}) == :error
    assert GenServer.call(kv, {:incr, "n", 5}) == {:ok, 5}
    assert GenServer.call(kv, {:incr, "n", -7}) == {:ok, -2}
    assert GenServer.call(kv, {:incr, :b, 1}) == {:error, :not_integer}
    assert GenServer.call(kv, {:incr, "n", 1.5}) == {:error, :badarg}
    assert GenServer.call(kv, {:incr, "n", 9_223_372_036_854_775_807}) == {:ok, 9_223_372_036_854_775_805}
    assert GenServer.call(kv, {:incr, "n", 3}) == {:error, :overflow}
    assert GenServer.call(kv, :nonsense) == {:error, :unknown_call}
    for k <- ["n", :b], do: :ok = GenServer.call(kv, {:delete, k})
  end

  test "kv casts, and messages that are ignored", %{node: node} do
    kv = {:kv, node}
    assert GenServer.cast(kv, {:put, "c", :cast}) == :ok
    assert GenServer.call(kv, {:get, "c"}) == {:ok, :cast}
    GenServer.cast(kv, {:delete, "c"})
    send(kv, {:put, "c", :info})
    assert GenServer.call(kv, {:get, "c"}) == :error
  end

  test "echo returns Elixir terms unchanged", %{node: node} do
    terms = [
      "binary ü",
      ~c"charlist",
      [a: 1, b: 2],
      %{"map" => %{nested: true}},
      1..10,
      MapSet.new([1, 2, 3]),
      %URI{host: "example.com", port: 80},
      ~D[2024-02-29],
      {:tuple, 1.5, -2, Bitwise.bsl(1, 100)},
      self(),
      make_ref(),
      &Enum.map/2,
      fn x -> x + 1 end,
      :"ünïcødé",
      <<1::3>>
    ]

    for t <- terms do
      assert GenServer.call({:echo, node}, {:echo, t}) === t
    end

    pid = GenServer.call({:echo, node}, :pid)
    assert is_pid(pid) and node(pid) == node
  end

  test "noproc for a missing name", %{node: node} do
    GenServer.call({:echo, node}, :pid)
    t0 = System.monotonic_time(:millisecond)

    assert {:noproc, {GenServer, :call, _}} =
             catch_exit(GenServer.call({:no_such_server, node}, :hello))

    assert System.monotonic_time(:millisecond) - t0 < 100
  end

  test "a call that times out leaves no late reply behind", %{node: node} do
    assert {:timeout, {GenServer, :call, _}} =
             catch_exit(GenServer.call({:echo, node}, {:sleep, 300}, 100))

    refute_receive _, 500
  end

  test "exit reasons and monitors", %{node: node} do
    old = GenServer.call({:echo, node}, :pid)
    ref = Process.monitor({:echo, node})

    assert {:boom, {GenServer, :call, _}} =
             catch_exit(GenServer.call({:echo, node}, {:stop, :boom}))

    assert_receive {:DOWN, ^ref, :process, {:echo, ^node}, :boom}, 5000
    new = CN.wait_restarted(node, old)
    ref2 = Process.monitor(new)
    GenServer.cast({:echo, node}, {:stop, {:shutdown, :by_cast}})
    assert_receive {:DOWN, ^ref2, :process, ^new, {:shutdown, :by_cast}}, 5000
    CN.wait_restarted(node, new)
    ref3 = Process.monitor({:no_such_server, node})
    assert_receive {:DOWN, ^ref3, :process, {:no_such_server, ^node}, :noproc}, 1000
  end

  test "links", %{node: node} do
    Process.flag(:trap_exit, true)
    old = GenServer.call({:echo, node}, :pid)
    Process.link(old)
    GenServer.cast({:echo, node}, {:stop, :linked})
    assert_receive {:EXIT, ^old, :linked}, 5000
    CN.wait_restarted(node, old)
  end

  test "the supervisor", %{node: node} do
    children = Supervisor.which_children({:cnode_sup, node})
    echo = GenServer.call({:echo, node}, :pid)

    assert [{:echo, ^echo, :worker, [:cnode_echo]}, {:kv, kv, :worker, [:cnode_kv]}] =
             Enum.sort(children)

    assert node(kv) == node

    assert Supervisor.count_children({:cnode_sup, node}) ==
             %{specs: 2, active: 2, supervisors: 0, workers: 2}
  end

  test "the node calls, casts and sends to Elixir", %{node: node} do
    name = :"cn_ex_srv_#{CN.uniq()}"
    {:ok, srv} = GenServer.start(CnodeTest.Server, self(), name: name)
    echo = {:echo, node}
    assert GenServer.call(echo, {:call, {name, Node.self()}, :hi, 2000}) == {:ok, {:elixir, :hi}}
    assert GenServer.call(echo, {:call, srv, :by_pid, 2000}) == {:ok, {:elixir, :by_pid}}
    assert GenServer.call(echo, {:call, {:nobody, Node.self()}, :x, 2000}) == {:error, :noproc}
    assert GenServer.call(echo, {:cast, {name, Node.self()}, :c}) == :ok
    assert_receive {:cast, :c}, 5000
    GenServer.cast(echo, {:send, self(), {:hello, "from C"}})
    assert_receive {:hello, "from C"}, 5000
    assert GenServer.call(echo, {:call, srv, :boom, 2000}) == {:error, :elixir_boom}
  end
end

defmodule CnodeStopTest do
  use ExUnit.Case, async: false
  alias CnodeTest.Node, as: CN

  test "SIGTERM stops the node with status 0; its monitors fire noconnection" do
    cn = CN.start(self())
    node = cn.node
    assert Node.ping(node) == :pong
    ref = Process.monitor({:kv, node})
    assert CN.stop(cn) == 0
    assert_receive {:DOWN, ^ref, :process, {:kv, ^node}, :noconnection}, 5000
    assert Node.ping(node) == :pang
  end
end
