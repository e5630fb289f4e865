# The OTP application cnode for mix: `mix compile` runs `make app` (which
# builds libcnode and the node program and copies it to priv/cnode), then
# compiles src/*.erl.  No hex package and no elixir_make: the compiler that
# runs make is the module below.  As a dependency:
#
#     {:cnode, path: "../cnode"}
#
# and in a supervisor's children: {:cnode, sname: "my_cnode"}.  See
# README.md, "In your supervision tree".

defmodule Mix.Tasks.Compile.CnodeMake do
  @moduledoc "Builds the C parts of cnode with `make app`."
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    dir = Path.dirname(__ENV__.file)
    make = System.get_env("MAKE", "make")

    # A make that calls mix must not hand its jobserver flags down to ours.
    env = for v <- ~w(MAKEFLAGS MFLAGS MAKELEVEL), do: {v, nil}

    case System.cmd(make, ["-s", "-C", dir, "app"],
           env: env,
           stderr_to_stdout: true,
           into: IO.stream(:stdio, :line)
         ) do
      {_, 0} ->
        {:ok, []}

      {_, status} ->
        Mix.shell().error("cnode: `#{make} -C #{dir} app` failed with status #{status}")
        {:error, []}
    end
  end
end

defmodule Cnode.MixProject do
  use Mix.Project

  def project do
    [
      app: :cnode,
      version: "0.2.0",
      elixir: "~> 1.14",
      language: :erlang,
      compilers: [:cnode_make] ++ Mix.compilers(),
      erlc_paths: ["src"],
      erlc_options: [:debug_info, :warnings_as_errors],
      elixirc_paths: [],
      deps: []
    ]
  end

  def application do
    [extra_applications: []]
  end
end
