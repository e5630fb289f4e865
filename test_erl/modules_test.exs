# The example server module, as an Elixir user meets it: the node program
# loads build/.../examples/modules/counter.so (--load), and Elixir calls it
# with GenServer.call, reads its state with :sys.get_state, and upgrades it
# to version 2 with :sys.suspend, :sys.change_code and :sys.resume.
#
#   CN_ROOT=$PWD CN_BUILD=$PWD/build/release elixir test_erl/modules_test.exs
#
# The node runs under a unique name with a random cookie (CNODE_COOKIE) and
# is stopped with SIGTERM to its own OS pid.

ExUnit.start()

defmodule ModulesTest do
  use ExUnit.Case

  @moduletag timeout: 120_000

  defp build,
    do:
      System.get_env("CN_BUILD") ||
        Path.join([System.get_env("CN_ROOT") || File.cwd!(), "build", "release"])

  defp so(file), do: Path.join([build(), "examples", "modules", file])

  defp uniq, do: "#{System.unique_integer([:positive])}x#{System.pid()}"

  setup_all do
    unless Node.alive?() do
      System.cmd("epmd", ["-daemon"])
      {:ok, _} = Node.start(:"modex#{uniq()}", :shortnames)
    end

    :ok
  end

  setup do
    cookie = "ck#{uniq()}"
    log = Path.join(System.tmp_dir!(), "cnmod#{uniq()}.log")

    port =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :binary,
        :exit_status,
        {:line, 4096},
        {:env, [{~c"CNODE_COOKIE", String.to_charlist(cookie)}]},
        {:args,
         ["-c", "exec \"$0\" --sname \"$1\" --load \"$2\" 2>>\"$3\"",
          Path.join(build(), "cnode"), "cnmod#{uniq()}", so("counter.so"), log]}
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    node =
      receive do
        {^port, {:data, {:eol, "cnode: ready as " <> rest}}} ->
          rest |> String.split(" ") |> hd() |> String.to_atom()

        {^port, {:exit_status, st}} ->
          flunk("cnode exited #{st}: #{File.read!(log)}")
      after
        30_000 -> flunk("no ready line")
      end

    Node.set_cookie(node, String.to_atom(cookie))

    on_exit(fn ->
      System.cmd("kill", ["-TERM", Integer.to_string(os_pid)])
      File.rm(log)
    end)

    %{node: node}
  end

  test "Elixir calls a C module loaded into the node, and upgrades it", %{node: node} do
    assert {:ok, 5} = GenServer.call({:counter, node}, {:add, 5})
    assert %{count: 5, vsn: ~c"1"} = :sys.get_state({:counter, node})

    assert {:ok, :counter, ~c"2"} =
             GenServer.call({:cnode_code, node}, {:load, so("counter_v2.so")})

    :ok = :sys.suspend({:counter, node})
    # Callers wait while it is suspended, and are served after.
    task = Task.async(fn -> GenServer.call({:counter, node}, {:add, 1}) end)
    assert nil == Task.yield(task, 200)
    :ok = :sys.change_code({:counter, node}, :counter, ~c"1", [])
    :ok = :sys.resume({:counter, node})
    assert {:ok, 6} = Task.await(task)
    assert %{count: 6, vsn: ~c"2", calls: 1} = :sys.get_state({:counter, node})
    assert {:ok, 2} = GenServer.call({:counter, node}, :calls)
  end
end
