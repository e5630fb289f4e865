# A mix project that uses cnode as a dependency, offline: a path
# dependency on $CNODE_PATH, or, when $CNODE_GIT is set, a git dependency
# on that repository at commit $CNODE_REF (both set by
# .ci/otpapp-test.sh).
defmodule CnodeMixCheck.MixProject do
  use Mix.Project

  def project do
    [
      app: :cnode_mix_check,
      version: "0.1.0",
      elixir: "~> 1.14",
      deps: [cnode_dep()]
    ]
  end

  defp cnode_dep do
    case System.get_env("CNODE_GIT") do
      nil -> {:cnode, path: System.get_env("CNODE_PATH", "../../..")}
      url -> {:cnode, git: url, ref: System.fetch_env!("CNODE_REF")}
    end
  end

  def application do
    [extra_applications: [:logger]]
  end
end
