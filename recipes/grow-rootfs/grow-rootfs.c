/* grow-rootfs: grow the mounted root ext4 file system to the size of its disk, as a cloud
 * image does at first boot. When / is the last partition of a GPT disk (efi.img's root), the
 * partition first grows to the disk's end, aligned down to 1 MiB: the backup GPT moves to the
 * disk's new end, the partition's entry and both headers are rewritten with their CRC32s (what
 * cloud-utils' growpart does with sgdisk), and the kernel learns the new size through
 * BLKPG_RESIZE_PARTITION. Then the file system grows (EXT4_IOC_RESIZE_FS, what resize2fs does
 * for a mounted file system), so the image needs neither e2fsprogs nor gdisk. Run by
 * /etc/init.d/rcS on every boot: when nothing is larger than what it holds it only says so.
 * One line on stdout per step; exit 1 when growing was needed and failed. */
#include <errno.h>
#include <fcntl.h>
#include <linux/blkpg.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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


static uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* CRC-32 (IEEE 802.3, reflected), the GPT's checksum. */
static uint32_t crc32(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static int read_u64_file(const char *path, unsigned long long *v) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    int got = fscanf(f, "%llu", v);
    fclose(f);
    return got == 1 ? 0 : -1;
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off) {
    return pread(fd, buf, n, (off_t)off) == (ssize_t)n ? 0 : -1;
}

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off) {
    return pwrite(fd, buf, n, (off_t)off) == (ssize_t)n ? 0 : -1;
}

/* When block device MAJ:MIN is a partition of a GPT disk and the last one on it, grow it to
 * the disk's last usable sector. Sets *sectors to the partition's size afterwards (512-byte
 * units, as sysfs counts). 0: done or nothing to do; 1: failed (said why). */
static int grow_partition(unsigned maj, unsigned min, unsigned long long *sectors) {
    char path[128], line[256], disk[sizeof line + 5] = "";
    unsigned long long partno, start, disk_sectors;
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/partition", maj, min);
    if (read_u64_file(path, &partno) != 0) return 0; /* a whole disk: no partition to grow */
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/start", maj, min);
    if (read_u64_file(path, &start) != 0) {
        printf("grow-rootfs: %s: not readable\n", path);
        return 1;
    }
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/../size", maj, min);
    if (read_u64_file(path, &disk_sectors) != 0) {
        printf("grow-rootfs: %s: not readable\n", path);
        return 1;
    }
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/../uevent", maj, min);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        while (fgets(line, sizeof line, f) != NULL)
            if (strncmp(line, "DEVNAME=", 8) == 0) {
                line[strcspn(line, "\n")] = 0;
                snprintf(disk, sizeof disk, "/dev/%s", line + 8);
            }
        fclose(f);
    }
    if (disk[0] == 0) {
        printf("grow-rootfs: no disk name in %s\n", path);
        return 1;
    }
    int fd = open(disk, O_RDWR | O_CLOEXEC);
    int lbs = 0;
    if (fd < 0 || ioctl(fd, BLKSSZGET, &lbs) != 0 || lbs < 512 || lbs > 65536) {
        printf("grow-rootfs: opening %s: %s\n", disk, strerror(errno));
        return 1;
    }
    uint64_t lb = (uint64_t)lbs, lbas = disk_sectors * 512 / lb;
    unsigned char *hdr = calloc(1, lb), *mbr = calloc(1, lb);
    if (hdr == NULL || mbr == NULL || pread_all(fd, mbr, lb, 0) != 0 || pread_all(fd, hdr, lb, lb) != 0) {
        printf("grow-rootfs: reading %s: %s\n", disk, strerror(errno));
        return 1;
    }
    uint32_t hsize = le32(hdr + 12);
    if (memcmp(hdr, "EFI PART", 8) != 0 || hsize < 92 || hsize > lb) {
        printf("reprovm: %s has no GPT: partition %llu left as it is\n", disk, partno);
        close(fd);
        return 0;
    }
    uint32_t want_crc = le32(hdr + 16);
    put32(hdr + 16, 0);
    if (crc32(hdr, hsize) != want_crc || le64(hdr + 24) != 1) {
        printf("grow-rootfs: %s: the primary GPT header is damaged (CRC32 or MyLBA); not touching "
               "it (sgdisk or gdisk can rebuild it from the backup)\n", disk);
        return 1;
    }
    uint32_t count = le32(hdr + 80), esize = le32(hdr + 84);
    uint64_t array_lba = le64(hdr + 72), alternate = le64(hdr + 32), last_usable = le64(hdr + 48);
    if (esize < 128 || esize % 8 != 0 || count == 0 || (uint64_t)count * esize > (1u << 20)) {
        printf("grow-rootfs: %s: a GPT entry array of %u x %u bytes\n", disk, count, esize);
        return 1;
    }
    size_t array_bytes = (size_t)count * esize;
    uint64_t array_lbas = (array_bytes + lb - 1) / lb;
    unsigned char *array = calloc(array_lbas, lb);
    if (array == NULL || pread_all(fd, array, array_lbas * lb, array_lba * lb) != 0 ||
        crc32(array, array_bytes) != le32(hdr + 88)) {
        printf("grow-rootfs: %s: the GPT entry array is unreadable or its CRC32 is wrong\n", disk);
        return 1;
    }
    /* The entry is the one starting where the kernel says the partition starts. */
    unsigned char *mine = NULL;
    uint64_t first = 0, last = 0;
    for (uint32_t i = 0; i < count; i++) {
        unsigned char *e = array + (size_t)i * esize;
        if (le64(e + 32) * lb == start * 512 && le64(e) | le64(e + 8)) {
            mine = e;
            first = le64(e + 32);
            last = le64(e + 40);
        }
    }
    if (mine == NULL || last < first) {
        printf("grow-rootfs: %s: no GPT entry starts at sector %llu\n", disk, start);
        return 1;
    }
    for (uint32_t i = 0; i < count; i++) {
        unsigned char *e = array + (size_t)i * esize;
        if (e != mine && (le64(e) | le64(e + 8)) && le64(e + 32) > first) {
            printf("reprovm: partition %llu is not the last on %s: left as it is\n", partno, disk);
            close(fd);
            return 0;
        }
    }
    if (lbas < 3 + 2 * array_lbas) {
        printf("grow-rootfs: %s: too small for a GPT\n", disk);
        return 1;
    }
    uint64_t new_alternate = lbas - 1, new_array = new_alternate - array_lbas;
    uint64_t new_last_usable = new_array - 1;
    /* The partition ends on a 1 MiB boundary, as partitioning tools align it (sgdisk warns
     * otherwise); the free space after it is less than 1 MiB. */
    uint64_t align = (1u << 20) / lb, new_last = (new_last_usable + 1) / align * align - 1;
    /* Free space after the partition is filled whether or not the disk grew (an image made
     * larger than its root partition, as efi.img is to whole 63 MiB); a disk that shrank
     * (its backup GPT now beyond the end) is left alone. */
    if (new_last <= last || new_alternate < alternate) {
        /* Nothing written. *sectors stays the kernel's size of the partition, which is what
         * the file system may fill (on a disk that shrank it is less than the entry says). */
        printf("reprovm: partition %llu fills %s (%llu sectors)\n", partno, disk,
               (unsigned long long)(last - first + 1));
        close(fd);
        return 0;
    }
    (void)last_usable;
    put64(mine + 40, new_last);
    uint32_t array_crc = crc32(array, array_bytes);
    /* A header like `h` for the grown disk, at `my_lba`, pointing at `alt` and at the entry
     * array at `entries`, its CRC32 computed (over hsize bytes, the CRC field zero). */
    unsigned char *backup = calloc(1, lb), *bridge = calloc(1, lb), *primary = calloc(1, lb);
    unsigned char *zero = calloc(1, lb);
    if (backup == NULL || bridge == NULL || primary == NULL || zero == NULL) return 1;
#define HEADER(h, my_lba, alt, entries)                                                          \
    do {                                                                                       \
        memcpy(h, hdr, hsize);                                                                 \
        put64(h + 24, my_lba);                                                                 \
        put64(h + 32, alt);                                                                    \
        put64(h + 48, new_last_usable);                                                        \
        put64(h + 72, entries);                                                                \
        put32(h + 88, array_crc);                                                              \
        put32(h + 16, 0);                                                                      \
        put32(h + 16, crc32(h, hsize));                                                        \
    } while (0)
    HEADER(backup, new_alternate, 1, new_array);
    /* Until the primary array is rewritten, the primary header points at the new backup's
     * copy of the entries: every single-sector header write leaves a valid pair behind it. */
    HEADER(bridge, 1, new_alternate, new_array);
    HEADER(primary, 1, new_alternate, array_lba);
#undef HEADER
    /* The protective MBR's one entry covers the disk (up to 2^32 - 1 sectors). */
    if (mbr[510] == 0x55 && mbr[511] == 0xAA && mbr[446 + 4] == 0xEE)
        put32(mbr + 446 + 12, new_alternate > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)new_alternate);
    /* Order (each step synced): the backup (entries, then header) at the new end, which the
     * old primary does not reference; the bridge header; the primary entries, which the
     * bridge does not reference; the final primary header; then the MBR's size and the old
     * backup header, zeroed when it lies between the partition's old end and the new backup
     * (a disk grown by fewer sectors than the array has it inside the new array: kept). */
    int zero_old = alternate > last && alternate < new_array;
    if (pwrite_all(fd, array, array_lbas * lb, new_array * lb) != 0 ||
        pwrite_all(fd, backup, lb, new_alternate * lb) != 0 || fsync(fd) != 0 ||
        pwrite_all(fd, bridge, lb, lb) != 0 || fsync(fd) != 0 ||
        pwrite_all(fd, array, array_lbas * lb, array_lba * lb) != 0 || fsync(fd) != 0 ||
        pwrite_all(fd, primary, lb, lb) != 0 || fsync(fd) != 0 ||
        pwrite_all(fd, mbr, lb, 0) != 0 ||
        (zero_old && pwrite_all(fd, zero, lb, alternate * lb) != 0) || fsync(fd) != 0) {
        printf("grow-rootfs: writing the GPT of %s: %s\n", disk, strerror(errno));
        return 1;
    }
    struct blkpg_partition part = {
        .start = (long long)(first * lb),
        .length = (long long)((new_last - first + 1) * lb),
        .pno = (int)partno,
    };
    struct blkpg_ioctl_arg arg = {.op = BLKPG_RESIZE_PARTITION, .datalen = sizeof part, .data = &part};
    if (ioctl(fd, BLKPG, &arg) != 0) {
        printf("grow-rootfs: telling the kernel partition %llu of %s grew: %s\n", partno, disk,
               strerror(errno));
        return 1;
    }
    close(fd);
    printf("reprovm: grew partition %llu of %s from %llu to %llu sectors\n", partno, disk,
           (unsigned long long)(last - first + 1), (unsigned long long)(new_last - first + 1));
    *sectors = (new_last - first + 1) * lb / 512;
    return 0;
}

int main(int argc, char **argv) {
    /* The mount point to grow: / unless given (a test grows a loop device's mount). */
    const char *mnt = argc > 1 ? argv[1] : "/";
    struct stat st;
    char path[96], line[256], dev[sizeof line + 5] = "";
    if (stat(mnt, &st) != 0) {
        printf("grow-rootfs: stat %s: %s\n", mnt, strerror(errno));
        return 1;
    }
    unsigned maj = major(st.st_dev), min = minor(st.st_dev);
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/size", maj, min);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        printf("reprovm: %s is not on a block device (%u:%u): nothing to grow\n", mnt, maj, min);
        return 0;
    }
    unsigned long long sectors = 0;
    int got = fscanf(f, "%llu", &sectors);
    fclose(f);
    if (got != 1) {
        printf("grow-rootfs: %s: not a number\n", path);
        return 1;
    }
    if (grow_partition(maj, min, &sectors) != 0) return 1;
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
        printf("reprovm: %s on %s is not ext2/3/4: nothing to grow\n", mnt, dev);
        return 0;
    }
    uint64_t blocks = le32(sb + 0x4);
    if (le32(sb + 0x60) & EXT4_FEATURE_INCOMPAT_64BIT)
        blocks |= (uint64_t)le32(sb + 0x150) << 32;
    uint64_t block_size = (uint64_t)1024 << le32(sb + 0x18);
    uint64_t want = (uint64_t)sectors * 512 / block_size;
    if (want <= blocks) {
        printf("reprovm: %s fills %s (%llu blocks of %llu bytes)\n", mnt, dev,
               (unsigned long long)blocks, (unsigned long long)block_size);
        return 0;
    }
    int root = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0 || ioctl(root, EXT4_IOC_RESIZE_FS, &want) != 0) {
        printf("grow-rootfs: growing %s on %s from %llu to %llu blocks failed: %s\n", mnt, dev,
               (unsigned long long)blocks, (unsigned long long)want, strerror(errno));
        return 1;
    }
    printf("reprovm: grew %s on %s from %llu to %llu blocks of %llu bytes\n", mnt, dev,
           (unsigned long long)blocks, (unsigned long long)want, (unsigned long long)block_size);
    return 0;
}
