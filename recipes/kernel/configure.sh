# Configure a kernel for $KERNEL_ARCH (the kernel's ARCH: x86_64, arm64; cross-compiled with
# $CROSS_COMPILE where it is set): tinyconfig, then the fragments in $KERNEL_FRAGMENTS (paths
# under the recipe files) merged in order, then olddefconfig. The xtask then checks that every
# option of the recipe's [kconfig] fragments survived. Shared by every kernel recipe.
b="$REPROVM_BUILD"
make -s O="$b"/obj ARCH="$KERNEL_ARCH" tinyconfig
set --
for f in $KERNEL_FRAGMENTS; do set -- "$@" "$b/files/$f"; done
ARCH="$KERNEL_ARCH" scripts/kconfig/merge_config.sh -m -O "$b"/obj "$b"/obj/.config "$@"
make -s O="$b"/obj ARCH="$KERNEL_ARCH" olddefconfig
