#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter (Rasa 3.6 supports 3.8-3.10), or explain what to install.
set -euo pipefail
candidates=()
command -v python3.10 >/dev/null 2>&1 && candidates+=("$(command -v python3.10)")
for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python; do
  [ -x "$p" ] && candidates+=("$p")
done
for p in "${candidates[@]}"; do
  if "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
    echo "$p"
    exit 0
  fi
done
echo "error: Rasa 3.6 needs Python 3.10, and none was found." >&2
echo "Install it (e.g. 'pyenv install 3.10.13' or 'apt-get install python3.10 python3.10-venv') and run make again." >&2
exit 1
