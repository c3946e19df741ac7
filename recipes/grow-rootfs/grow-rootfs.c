/* grow-rootfs: grow the mounted root ext4 file system to the size of its block device, as a
 * cloud image does at first boot. It asks the kernel (EXT4_IOC_RESIZE_FS, what resize2fs does
 * for a mounted file system), so the image needs no e2fsprogs. Run by /etc/init.d/rcS on every
 * boot: on a device no larger than the file system it only says so. One line on stdout; exit 1
 * when growing was needed and failed. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define EXT4_IOC_RESIZE_FS _IOW('f', 16, uint64_t)
#define EXT4_FEATURE_INCOMPAT_64BIT 0x80

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int main(void) {
    struct stat st;
    char path[96], line[256], dev[sizeof line + 5] = "";
    if (stat("/", &st) != 0) {
        printf("grow-rootfs: stat /: %s\n", strerror(errno));
        return 1;
    }
    unsigned maj = major(st.st_dev), min = minor(st.st_dev);
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/size", maj, min);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        printf("reprovm: / is not on a block device (%u:%u): nothing to grow\n", maj, min);
        return 0;
    }
    unsigned long long sectors = 0;
    int got = fscanf(f, "%llu", &sectors);
    fclose(f);
    if (got != 1) {
        printf("grow-rootfs: %s: not a number\n", path);
        return 1;
    }
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/uevent", maj, min);
    if ((f = fopen(path, "r")) != NULL) {
        while (fgets(line, sizeof line, f) != NULL) {
            if (strncmp(line, "DEVNAME=", 8) == 0) {
                line[strcspn(line, "\n")] = 0;
                snprintf(dev, sizeof dev, "/dev/%s", line + 8);
            }
        }
        fclose(f);
    }
    if (dev[0] == 0) {
        printf("grow-rootfs: no device name for %u:%u in %s\n", maj, min, path);
        return 1;
    }
    int fd = open(dev, O_RDONLY | O_CLOEXEC);
    unsigned char sb[1024];
    if (fd < 0 || pread(fd, sb, sizeof sb, 1024) != (ssize_t)sizeof sb) {
        printf("grow-rootfs: reading the superblock of %s: %s\n", dev, strerror(errno));
        return 1;
    }
    close(fd);
    if (sb[0x38] != 0x53 || sb[0x39] != 0xEF) {
        printf("reprovm: / on %s is not ext2/3/4: nothing to grow\n", dev);
        return 0;
    }
    uint64_t blocks = le32(sb + 0x4);
    if (le32(sb + 0x60) & EXT4_FEATURE_INCOMPAT_64BIT)
        blocks |= (uint64_t)le32(sb + 0x150) << 32;
    uint64_t block_size = (uint64_t)1024 << le32(sb + 0x18);
    uint64_t want = (uint64_t)sectors * 512 / block_size;
    if (want <= blocks) {
        printf("reprovm: / fills %s (%llu blocks of %llu bytes)\n", dev,
               (unsigned long long)blocks, (unsigned long long)block_size);
        return 0;
    }
    int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0 || ioctl(root, EXT4_IOC_RESIZE_FS, &want) != 0) {
        printf("grow-rootfs: growing / on %s from %llu to %llu blocks failed: %s\n", dev,
               (unsigned long long)blocks, (unsigned long long)want, strerror(errno));
        return 1;
    }
    printf("reprovm: grew / on %s from %llu to %llu blocks of %llu bytes\n", dev,
           (unsigned long long)blocks, (unsigned long long)want, (unsigned long long)block_size);
    return 0;
}
