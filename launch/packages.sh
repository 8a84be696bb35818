# Sourced by launch/train and launch/test: installs the Debian packages the trainer needs when
# they are missing (as root), or says which apt-get line to run (as a user).
# Usage: ensure_packages [extra-package...]
ensure_packages() {
    local packages=()
    command -v mpirun >/dev/null 2>&1 || packages+=(openmpi-bin)
    command -v pkg-config >/dev/null 2>&1 || packages+=(pkg-config)
    pkg-config --exists ompi-c 2>/dev/null || packages+=(libopenmpi-dev)
    pkg-config --exists openblas 2>/dev/null || packages+=(libopenblas-dev)
    [ -f /usr/include/zlib.h ] || packages+=(zlib1g-dev)
    local extra
    for extra in "$@"; do
        dpkg -s "$extra" >/dev/null 2>&1 || packages+=("$extra")
    done
    [ ${#packages[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ]; then
        echo "installing ${packages[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    else
        echo "missing packages; run: sudo apt-get install -y ${packages[*]}" >&2
        return 1
    fi
}
