# Configure a kernel: tinyconfig, then the fragments in $KERNEL_FRAGMENTS (paths under the
# recipe files) merged in order, then olddefconfig. The xtask then checks that every option
# of the recipe's [kconfig] fragments survived. Shared by every kernel recipe.
b="$REPROVM_BUILD"
make -s O="$b"/obj ARCH=x86_64 tinyconfig
set --
for f in $KERNEL_FRAGMENTS; do set -- "$@" "$b/files/$f"; done
scripts/kconfig/merge_config.sh -m -O "$b"/obj "$b"/obj/.config "$@"
make -s O="$b"/obj ARCH=x86_64 olddefconfig
