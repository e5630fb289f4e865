# The README's iex walkthrough, typed into a real iex as a person would.
#
#   CN_ROOT=$PWD CN_BUILD=$PWD/build/release elixir test_erl/iex_walkthrough_test.exs
#
# Reads the first session block under "## Quick start from iex" in
# README.md, starts $CN_BUILD/cnode under a unique name in a scratch $HOME
# (so the node makes the cookie file there, as the README says, and iex
# finds it), starts `iex --sname` in a private tmux server with the same
# $HOME, then types each `iex(...)N> command` line with tmux send-keys and
# reads what iex printed with capture-pane.  What iex printed must be what
# the README shows, up to the names (the README's cnode@vm and me@vm become
# this run's), pids and references, and line wrapping; the prompt number
# that follows each command must be the README's too.  The node is stopped
# with SIGTERM to its own OS pid, the tmux server with kill-server on its
# own socket.

ExUnit.start()

defmodule IexWalkthroughTest do
  use ExUnit.Case

  @moduletag timeout: 180_000

  @readme_node "cnode@vm"
  @readme_iex "me@vm"

  defp root, do: System.get_env("CN_ROOT") || File.cwd!()

  defp build,
    do: System.get_env("CN_BUILD") || Path.join([root(), "build", "release"])

  defp uniq, do: "#{System.unique_integer([:positive])}x#{System.pid()}"

  # [{n, command, expected_output}] from the README's first iex block.
  defp readme_steps do
    text = File.read!(Path.join(root(), "README.md"))
    [_, rest] = String.split(text, "## Quick start from iex", parts: 2)
    [_, block, _] = String.split(rest, "```", parts: 3)

    prompt = ~r/^iex\(#{Regex.escape(@readme_iex)}\)(\d+)> (.*)$/

    block
    |> String.split("\n")
    |> Enum.reduce([], fn line, acc ->
      case Regex.run(prompt, line) do
        [_, n, cmd] -> [{String.to_integer(n), cmd, []} | acc]
        nil when acc == [] -> acc
        nil -> [{n, cmd, out} | rest] = acc; [{n, cmd, [line | out]} | rest]
      end
    end)
    |> Enum.reverse()
    |> Enum.map(fn {n, cmd, out} -> {n, cmd, out |> Enum.reverse() |> Enum.join("\n")} end)
  end

  # How iex prints the atom for a node name.
  defp atom_text(name) do
    if name =~ ~r/^[a-z][a-zA-Z0-9_@]*$/, do: ":" <> name, else: ":\"#{name}\""
  end

  defp normalize(text, node) do
    text
    |> String.replace(":\"#{@readme_node}\"", atom_text(node))
    |> String.replace(":#{@readme_node}", atom_text(node))
    |> String.replace(~r/#PID<[0-9.]+>/, "#PID<_>")
    |> String.replace(~r/#Reference<[0-9.]+>/, "#Reference<_>")
    |> String.replace(~r/\s+/, " ")
    |> String.replace(~r/([\[{(]) /, "\\1")
    |> String.replace(~r/ ([\]})])/, "\\1")
    |> String.trim()
  end

  # ---- The node ------------------------------------------------------------

  defp start_node(home) do
    name = "cnwalk#{uniq()}"
    exe = Path.join(build(), "cnode")
    log = Path.join(home, "node.log")

    port =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :binary,
        :exit_status,
        {:line, 4096},
        {:env, [{~c"HOME", String.to_charlist(home)}]},
        {:args, ["-c", "exec \"$0\" --sname \"$1\" 2>>\"$2\"", exe, name, log]}
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    receive do
      {^port, {:data, {:eol, "cnode: ready as " <> rest}}} ->
        [node | _] = String.split(rest, " ")
        %{port: port, os_pid: os_pid, node: node, log: log}

      {^port, {:exit_status, st}} ->
        flunk("cnode exited #{st} before it was ready: #{File.read!(log)}")
    after
      30_000 -> flunk("cnode printed no ready line in 30 s")
    end
  end

  defp stop_node(%{port: port, os_pid: os_pid}) do
    System.cmd("kill", ["-TERM", Integer.to_string(os_pid)])

    receive do
      {^port, {:exit_status, st}} -> st
    after
      10_000 -> flunk("cnode did not stop on SIGTERM")
    end
  end

  # ---- iex in tmux ---------------------------------------------------------

  defp tmux(sock, args) do
    {out, 0} = System.cmd("tmux", ["-L", sock | args], stderr_to_stdout: true)
    out
  end

  defp screen(sock), do: tmux(sock, ["capture-pane", "-p", "-J", "-S", "-", "-t", "walk"])

  defp prompts(screen, iex) do
    Regex.scan(~r/^iex\(#{Regex.escape(iex)}\)(\d+)>( |$)/m, screen, capture: :all_but_first)
    |> Enum.map(fn [n | _] -> String.to_integer(n) end)
  end

  # Waits until the screen shows more than `seen` prompts, the last of them
  # on the last line; returns the screen.
  defp await_prompt(sock, iex, seen, deadline) do
    s = screen(sock)
    last = s |> String.trim_trailing() |> String.split("\n") |> List.last()

    cond do
      length(prompts(s, iex)) > seen and last =~ ~r/^iex\(#{Regex.escape(iex)}\)\d+>\s*$/ ->
        s

      System.monotonic_time(:millisecond) > deadline ->
        flunk("iex showed no new prompt; the screen:\n" <> s)

      true ->
        Process.sleep(50)
        await_prompt(sock, iex, seen, deadline)
    end
  end

  # What iex printed between the last two prompts, and the last prompt's number.
  defp last_output(screen, iex) do
    re = ~r/^iex\(#{Regex.escape(iex)}\)(\d+)>( .*)?$/m
    parts = Regex.split(re, String.trim_trailing(screen))
    n = screen |> prompts(iex) |> List.last()
    {parts |> Enum.at(-2) |> String.trim("\n"), n}
  end

  test "the README's iex session, typed into iex" do
    steps = readme_steps()
    assert length(steps) >= 10, "found only #{length(steps)} iex steps in README.md"

    home = Path.join(System.tmp_dir!(), "cnwalk-" <> uniq())
    File.mkdir_p!(home)
    node = start_node(home)
    host = node.node |> String.split("@") |> List.last()
    iex = "me#{uniq()}@#{host}"
    sock = "cnwalk" <> uniq()

    try do
      # The node made the cookie file; iex reads it with the same $HOME.
      assert File.exists?(Path.join(home, ".erlang.cookie"))

      tmux(sock, [
        "new-session", "-d", "-s", "walk", "-x", "200", "-y", "50",
        "env HOME='#{home}' iex --sname '#{String.replace(iex, "@" <> host, "")}'"
      ])

      deadline = fn -> System.monotonic_time(:millisecond) + 30_000 end
      s = await_prompt(sock, iex, 0, deadline.())
      assert prompts(s, iex) == [1]

      steps
      |> Enum.with_index()
      |> Enum.each(fn {{n, cmd, expected}, i} ->
        seen = length(prompts(screen(sock), iex))
        typed = String.replace(cmd, @readme_node, node.node)
        # A person reads the last answer before typing the next line.
        Process.sleep(300)
        tmux(sock, ["send-keys", "-t", "walk", "-l", typed])
        tmux(sock, ["send-keys", "-t", "walk", "Enter"])
        s = await_prompt(sock, iex, seen, deadline.())
        {got, next} = last_output(s, iex)

        assert normalize(got, node.node) == normalize(expected, node.node),
               "iex(#{n})> #{typed}\nREADME shows:\n#{expected}\niex printed:\n#{got}"

        case Enum.at(steps, i + 1) do
          {next_n, _, _} -> assert next == next_n, "after iex(#{n}) the prompt is #{next}, README shows #{next_n}"
          nil -> :ok
        end
      end)
    after
      System.cmd("tmux", ["-L", sock, "kill-server"], stderr_to_stdout: true)
      assert stop_node(node) == 0
      File.rm_rf!(home)
    end
  end
end
