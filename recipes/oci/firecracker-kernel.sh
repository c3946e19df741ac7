# Liquid Metal's two Firecracker kernel images (its image-builder: kernel/bin and
# kernel/modules, both FROM scratch). $1 is `bin` or `modules`.
# bin: the kernel as Firecracker loads it ($FIRECRACKER_KERNEL of the kernel's outputs: on
#   x86_64 the uncompressed ELF vmlinux with its PVH entry, on arm64 the uncompressed Image)
#   at boot/vmlinux, where the x86 builder's Dockerfile puts it, with hard links at
#   boot/image (where its ARM Dockerfile puts it), bin/vmlinux (the `filename` its README
#   documents) and bin/image (the name in its ARM README): the four names are the same on
#   both architectures, so one flintlock spec serves both; and boot/config-RELEASE.
# modules: lib/modules/RELEASE, as modules_install leaves it.
b="$REPROVM_BUILD"
k="$b/deps/$KERNEL_DEP"
kver="$(cat "$k"/kernel.release)"
root="$b"/oci-root
case "$1" in
bin)
  mkdir -p "$root"/boot "$root"/bin
  cp "$k"/"$FIRECRACKER_KERNEL" "$root"/boot/vmlinux
  cp "$k"/config "$root"/boot/config-"$kver"
  ln "$root"/boot/vmlinux "$root"/boot/image
  ln "$root"/boot/vmlinux "$root"/bin/vmlinux
  ln "$root"/boot/vmlinux "$root"/bin/image
  ;;
modules)
  mkdir -p "$root"/lib/modules
  cp -R "$k"/lib/modules/"$kver" "$root"/lib/modules/"$kver"
  rm -f "$root"/lib/modules/"$kver"/build "$root"/lib/modules/"$kver"/source
  ;;
*)
  echo "firecracker-kernel.sh: bin or modules, not '$1'" >&2
  exit 1
  ;;
esac
