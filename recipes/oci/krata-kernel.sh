# krata's zone-kernel image (its docs, "OCI-based kernel image contents"; laid out as
# edera-dev/linux-kernel-oci's images are): /kernel/image (x86_64: bzImage; aarch64: Image.gz,
# the gzipped Image, as edera ships it), /kernel/config.gz,
# /kernel/addons.squashfs (modules/ = lib/modules/RELEASE, root-owned, fixed times) and
# /kernel/metadata (KEY=VALUE). KERNEL_CONFIG is the sha256 of the uncompressed .config, which
# the recipe also attaches to the image as a blob of its own ([[oci.referrer]]).
b="$REPROVM_BUILD"
k="$b/deps/$KERNEL_DEP"
kver="$(cat "$k"/kernel.release)"
root="$b"/oci-root/kernel
mkdir -p "$root" "$b"/addons
case "$KERNEL_IMAGE" in
Image) gzip -9n <"$k"/Image >"$root"/image ;;
*) cp "$k"/"$KERNEL_IMAGE" "$root"/image ;;
esac
gzip -9n <"$k"/config >"$root"/config.gz
cp -R "$k"/lib/modules/"$kver" "$b"/addons/modules
rm -f "$b"/addons/modules/build "$b"/addons/modules/source
# Modes as the store normalises them, whichever store the modules were copied from.
find "$b"/addons -type d -exec chmod 0755 {} +
find "$b"/addons -type f -exec chmod 0644 {} +
# mksquashfs (>= 4.4) takes the filesystem and every inode time from SOURCE_DATE_EPOCH.
mksquashfs "$b"/addons "$root"/addons.squashfs -noappend -all-root -no-xattrs -comp gzip \
  -processors 1 -no-progress >/dev/null
{
  echo "KERNEL_ARCH=$TARGET_ARCH"
  echo "KERNEL_VERSION=$kver"
  echo "KERNEL_FLAVOR=$KERNEL_FLAVOR"
  echo "KERNEL_CONFIG=sha256:$(sha256sum <"$k"/config | cut -d' ' -f1)"
  echo "KERNEL_TAGS=$KERNEL_TAGS"
} >"$root"/metadata
