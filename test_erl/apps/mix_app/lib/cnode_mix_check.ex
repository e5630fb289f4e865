defmodule CnodeMixCheck do
  @moduledoc """
  cnode as a mix dependency, under an Elixir supervisor: `{:cnode, opts}`
  in the children list.  main/0 starts distribution with a unique short
  name, calls kv on the node, kills the C process with kill -9, checks
  that the supervisor restarted it and that calls work again, stops the
  supervisor and checks that the C process is gone.  It prints one line
  per step and halts with status 0 when every step passed.
  """

  def main do
    check()
    IO.puts("cnode_mix_check: passed")
    System.halt(0)
  rescue
    e ->
      IO.puts("cnode_mix_check: FAILED: " <> Exception.format(:error, e, __STACKTRACE__))
      System.halt(1)
  catch
    kind, reason ->
      IO.puts("cnode_mix_check: FAILED: " <> Exception.format(kind, reason, __STACKTRACE__))
      System.halt(1)
  end

  defp check do
    uniq = System.pid()
    :os.cmd(~c"epmd -daemon")
    {:ok, _} = Node.start(:"mixchk#{uniq}", :shortnames)

    children = [{:cnode, sname: "mixcn#{uniq}", log_level: :warning}]
    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    Process.unlink(sup)

    child = child(sup)
    node = :cnode.node_name(child)
    step("started #{node}")
    :ok = GenServer.call({:kv, node}, {:put, :k, 1})
    {:ok, 1} = GenServer.call({:kv, node}, {:get, :k})
    step("kv put and get")

    os_pid = :cnode.os_pid(child)
    System.cmd("kill", ["-9", "#{os_pid}"])
    child2 = wait_restart(sup, child, 20_000)
    ^node = :cnode.node_name(child2)
    false = alive?(os_pid)
    os_pid2 = :cnode.os_pid(child2)
    step("kill -9 of #{os_pid}: restarted as #{os_pid2}")
    :error = GenServer.call({:kv, node}, {:get, :k})
    :ok = GenServer.call({:kv, node}, {:put, :k, 2})
    {:ok, 2} = GenServer.call({:kv, node}, {:get, :k})
    step("kv after the restart")

    :ok = Supervisor.stop(sup)
    false = alive?(os_pid2)
    step("supervisor stopped, node #{os_pid2} gone")
  end

  defp step(text), do: IO.puts("cnode_mix_check: ok: " <> text)

  defp child(sup) do
    [{:cnode, pid, :worker, [:cnode]}] = Supervisor.which_children(sup)
    pid
  end

  defp wait_restart(sup, old, ms) when ms > 0 do
    # The supervisor answers once the restart is over; a slow one times
    # the call out, and we ask again.
    current =
      try do
        child(sup)
      catch
        :exit, _ -> nil
      end

    case current do
      pid when is_pid(pid) and pid != old ->
        pid

      _ ->
        Process.sleep(50)
        wait_restart(sup, old, ms - 50)
    end
  end

  defp wait_restart(_sup, old, _ms), do: raise("cnode #{inspect(old)} not restarted")

  defp alive?(os_pid), do: File.dir?("/proc/#{os_pid}")
end
