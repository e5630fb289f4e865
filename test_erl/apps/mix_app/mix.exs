# A mix project that uses cnode as a path dependency, offline.  The path
# is $CNODE_PATH (the tree under test, set by .ci/otpapp-test.sh).
defmodule CnodeMixCheck.MixProject do
  use Mix.Project

  def project do
    [
      app: :cnode_mix_check,
      version: "0.1.0",
      elixir: "~> 1.14",
      deps: [{:cnode, path: System.get_env("CNODE_PATH", "../../..")}]
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end
end
