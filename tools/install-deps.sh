#!/usr/bin/env bash
# Installs what Tarn needs to build and test on Debian 12 (bookworm):
# QEMU >= 8.1 from bookworm-backports (x2APIC under TCG), Bochs and the GRUB ISO
# tools (the VMX test machine; bochs-term for its headless `term` display),
# binutils objcopy, and the Rust target.
# The backports suite reuses the URI of the machine's own Debian source.
set -euo pipefail

need_root() { if [ "$(id -u)" -ne 0 ]; then echo sudo; fi; }
SUDO=$(need_root)

qemu_ok() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 || return 1
    local v
    v=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    set -- $v
    [ "${1:-0}" -gt 8 ] || { [ "${1:-0}" -eq 8 ] && [ "${2:-0}" -ge 1 ]; }
}
bochs_ok() {
    for t in bochs grub-mkrescue xorriso mformat; do command -v "$t" >/dev/null 2>&1 || return 1; done
    [ -e /usr/lib/grub/i386-pc/modinfo.sh ] && [ -e /usr/share/bochs/BIOS-bochs-latest ] || return 1
    # Headless runs use Bochs' `term` display library (Debian package bochs-term).
    local plugins=/usr/lib/x86_64-linux-gnu/bochs/plugins
    [ ! -d "$plugins" ] || [ -e "$plugins/libbx_term_gui.so" ]
}

if ! command -v apt-get >/dev/null 2>&1; then
    if ! qemu_ok || ! bochs_ok; then
        echo "tarn: this is not Debian; install QEMU >= 8.1 (qemu-system-x86_64), bochs 2.7 with its BIOS" >&2
        echo "      and the term display library," >&2
        echo "      grub-mkrescue (grub-pc-bin), xorriso and mtools with your package manager." >&2
        exit 1
    fi
else
    if ! qemu_ok; then
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
        if [ "$codename" = bookworm ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            uri=$(grep -rhs '^URIs:' /etc/apt/sources.list.d/*.sources | grep -v security | grep -i debian | head -n1 | awk '{print $2}')
            [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | grep -v security | awk '{print $2}' | head -n1)
            [ -n "$uri" ] || { echo "tarn: no Debian source found to reuse for bookworm-backports" >&2; exit 1; }
            printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
                | $SUDO tee /etc/apt/sources.list.d/tarn-backports.sources >/dev/null
        fi
        $SUDO apt-get update -qq
        if [ "$codename" = bookworm ]; then
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports qemu-system-x86 >/dev/null
        else
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >/dev/null
        fi
    fi
    if ! bochs_ok || ! command -v objcopy >/dev/null 2>&1; then
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            bochs bochs-term bochsbios vgabios grub-pc-bin grub-common xorriso mtools binutils >/dev/null
    fi
fi
qemu_ok || { echo "tarn: QEMU >= 8.1 is still missing" >&2; exit 1; }
if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx x86_64-unknown-none || rustup target add x86_64-unknown-none
fi
