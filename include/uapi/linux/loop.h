/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The loop block device ABI: the stock one, plus one extension flag,
 * LO_FLAGS_AUTOCLEAR_DELETE (see below).
 *
 * Structure layouts, ioctl numbers and flag values are those of the stock
 * kernel's <linux/loop.h>; user space built against either header works
 * with either driver.
 */
#ifndef _UAPI_LINUX_LOOP_H
#define _UAPI_LINUX_LOOP_H

#include <asm/posix_types.h>	/* __kernel_old_dev_t */
#include <linux/types.h>	/* __u32, __u64 */

#define LO_NAME_SIZE	64
#define LO_KEY_SIZE	32

/*
 * Device flags (lo_flags).
 *
 * LO_FLAGS_READ_ONLY:	the device rejects writes. Set by the driver when the
 *			backing file or the device was opened read-only.
 * LO_FLAGS_AUTOCLEAR:	detach at the last close of the device.
 * LO_FLAGS_PARTSCAN:	scan the device for partitions when it is attached.
 * LO_FLAGS_DIRECT_IO:	access the backing file with direct I/O.
 * LO_FLAGS_AUTOCLEAR_DELETE:
 *			extension of this driver: once the device is
 *			detached, remove the device itself, as
 *			LOOP_CTL_REMOVE would: after the autoclear detach at
 *			its last close (with LO_FLAGS_AUTOCLEAR), and after
 *			LOOP_CLR_FD, at once (sole opener) or at the last
 *			close (other openers). The stock driver rejects this bit
 *			with EINVAL in LOOP_CONFIGURE, which lets user space
 *			probe for support. The bit sits far above the stock
 *			flags so that a future stock flag does not collide.
 */
enum {
	LO_FLAGS_READ_ONLY		= 1,
	LO_FLAGS_AUTOCLEAR		= 4,
	LO_FLAGS_PARTSCAN		= 8,
	LO_FLAGS_DIRECT_IO		= 16,
	LO_FLAGS_AUTOCLEAR_DELETE	= 1 << 30,
};

/* Flags LOOP_SET_STATUS and LOOP_SET_STATUS64 may set. */
#define LOOP_SET_STATUS_SETTABLE_FLAGS	(LO_FLAGS_AUTOCLEAR | \
					 LO_FLAGS_PARTSCAN | \
					 LO_FLAGS_AUTOCLEAR_DELETE)

/* Flags LOOP_SET_STATUS and LOOP_SET_STATUS64 may clear. */
#define LOOP_SET_STATUS_CLEARABLE_FLAGS	(LO_FLAGS_AUTOCLEAR | \
					 LO_FLAGS_AUTOCLEAR_DELETE)

/* Flags LOOP_CONFIGURE may set. */
#define LOOP_CONFIGURE_SETTABLE_FLAGS	(LO_FLAGS_READ_ONLY | \
					 LO_FLAGS_AUTOCLEAR | \
					 LO_FLAGS_PARTSCAN | \
					 LO_FLAGS_DIRECT_IO | \
					 LO_FLAGS_AUTOCLEAR_DELETE)

/* Legacy status structure of LOOP_SET_STATUS and LOOP_GET_STATUS. */
struct loop_info {
	int			lo_number;	/* read only */
	__kernel_old_dev_t	lo_device;	/* read only */
	unsigned long		lo_inode;	/* read only */
	__kernel_old_dev_t	lo_rdevice;	/* read only */
	int			lo_offset;
	int			lo_encrypt_type;	/* must be 0 */
	int			lo_encrypt_key_size;	/* must be 0..32 */
	int			lo_flags;
	char			lo_name[LO_NAME_SIZE];
	unsigned char		lo_encrypt_key[LO_KEY_SIZE];	/* ignored */
	unsigned long		lo_init[2];	/* ignored */
	char			reserved[4];
};

/* Status structure of LOOP_SET_STATUS64, LOOP_GET_STATUS64, LOOP_CONFIGURE. */
struct loop_info64 {
	__u64	lo_device;		/* read only */
	__u64	lo_inode;		/* read only */
	__u64	lo_rdevice;		/* read only */
	__u64	lo_offset;		/* bytes into the backing file */
	__u64	lo_sizelimit;		/* bytes; 0: up to the end of the file */
	__u32	lo_number;		/* read only */
	__u32	lo_encrypt_type;	/* must be 0 */
	__u32	lo_encrypt_key_size;	/* must be 0..32 */
	__u32	lo_flags;
	__u8	lo_file_name[LO_NAME_SIZE];
	__u8	lo_crypt_name[LO_NAME_SIZE];	/* ignored */
	__u8	lo_encrypt_key[LO_KEY_SIZE];	/* ignored */
	__u64	lo_init[2];			/* ignored */
};

/**
 * struct loop_config - argument of LOOP_CONFIGURE: attach and configure
 *			in one step.
 * @fd:		file descriptor of the backing file.
 * @block_size:	logical block size of the device; 0 picks the default.
 * @info:	offset, size limit, flags and file name to start with.
 * @__reserved:	should be zero (not checked, as with the stock driver).
 */
struct loop_config {
	__u32			fd;
	__u32			block_size;
	struct loop_info64	info;
	__u64			__reserved[8];
};

/* Historic transfer types; only LO_CRYPT_NONE is accepted. */
#define LO_CRYPT_NONE		0
#define LO_CRYPT_XOR		1
#define LO_CRYPT_DES		2
#define LO_CRYPT_FISH2		3
#define LO_CRYPT_BLOW		4
#define LO_CRYPT_CAST128	5
#define LO_CRYPT_IDEA		6
#define LO_CRYPT_DUMMY		9
#define LO_CRYPT_SKIPJACK	10
#define LO_CRYPT_CRYPTOAPI	18
#define MAX_LO_CRYPT		20

/* ioctls on /dev/loopN ('L' = 0x4C). */
#define LOOP_SET_FD		0x4C00
#define LOOP_CLR_FD		0x4C01
#define LOOP_SET_STATUS		0x4C02
#define LOOP_GET_STATUS		0x4C03
#define LOOP_SET_STATUS64	0x4C04
#define LOOP_GET_STATUS64	0x4C05
#define LOOP_CHANGE_FD		0x4C06
#define LOOP_SET_CAPACITY	0x4C07
#define LOOP_SET_DIRECT_IO	0x4C08
#define LOOP_SET_BLOCK_SIZE	0x4C09
#define LOOP_CONFIGURE		0x4C0A

/* ioctls on /dev/loop-control. */
#define LOOP_CTL_ADD		0x4C80
#define LOOP_CTL_REMOVE		0x4C81
#define LOOP_CTL_GET_FREE	0x4C82

#endif /* _UAPI_LINUX_LOOP_H */
