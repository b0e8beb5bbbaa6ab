# Sourced by demo, test and .ci/run: puts the toolchains of this machine kind on PATH
# (a non-login shell in CI may lack them).
for d in "$HOME/.cargo/bin" /usr/local/go/bin "$HOME/go/bin"; do
  case ":$PATH:" in *":$d:"*) ;; *) [ -d "$d" ] && PATH="$d:$PATH" ;; esac
done
export PATH
