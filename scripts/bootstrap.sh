# Shared by scripts/serve and scripts/test: make .venv with Python 3.11+ and install hardmail into it.
# Sourced, not run. Installs Debian's python3-venv first when the venv module is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: need root (or sudo) to run: $*" >&2; exit 1; fi
}

apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "Installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_venv() {
    if [ ! -x .venv/bin/python ]; then
        if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
            apt_install python3-venv
        fi
        python3 -m venv .venv
        quiet_pip install --upgrade pip
    fi
}

# pip install only when pyproject.toml changed since the last install into this .venv.
install_project() {
    local spec="$1" stamp=".venv/.installed-$(echo "$1" | tr -c 'a-z' '_')"
    local digest; digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then return 0; fi
    quiet_pip install -e "$spec"
    .venv/bin/python -c "import hardmail" && echo "$digest" > "$stamp"
}

# pip, silent unless it fails (then its whole output is shown).
quiet_pip() {
    local log; log=$(mktemp)
    if ! .venv/bin/python -m pip "$@" >"$log" 2>&1; then
        cat "$log" >&2; rm -f "$log"; echo "error: pip $* failed (output above)" >&2; exit 1
    fi
    rm -f "$log"
}
