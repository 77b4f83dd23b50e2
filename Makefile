# SPDX-License-Identifier: GPL-2.0
#
# Targets:
#   module (default)  build loop.ko against KDIR
#   install           install loop.ko for KDIR's kernel (updates/, depmod)
#   dkms-install      register, build and install with DKMS
#   lint              sparse (C=2), checkpatch --strict and W=1, both kernels
#   selftests         build the kselftests (static, for the guests)
#   check             install what is missing, build, run every test in
#                     QEMU guests: Debian 6.1, Debian 6.12, debug 6.12,
#                     and the system guest (Debian 12 with systemd and
#                     udev, the module installed by DKMS)
#   vm                boot a 6.12 guest with the module and run the demo;
#                     make vm SHELL_VM=1 gives an interactive shell,
#                     make vm SYSTEM=1 the system guest (systemd, udev,
#                     the module installed by DKMS) with root logged in
#   bench             stock loop.ko against ours, same guest boot, 6.1 and
#                     6.12: writes bench/results-<kernel>.md and its
#                     SVG pictures (not a test);
#                     BENCH_PARALLEL=1 boots both guests at once
#                     BENCH_AA=1: stock against itself, the noise
#                     floor (bench/results-<kernel>-aa.md)
#   prove-races       each race test fails on a driver with its race back
#   soak              DURATION seconds (default 1800) of fuzzer, race and
#                     integrity tests together on the debug kernel
#   clean

KDIR ?= $(firstword $(wildcard /lib/modules/$(shell uname -r)/build) \
	$(lastword $(sort $(wildcard /usr/src/linux-headers-*[0-9]-amd64))))
PWD := $(CURDIR)
BENCH_PARALLEL ?= 0
VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)

.PHONY: module install dkms-install lint selftests check vm clean deps prove-races bench soak

module:
	$(MAKE) -C $(KDIR) M=$(PWD) modules

install: module
	$(MAKE) -C $(KDIR) M=$(PWD) INSTALL_MOD_DIR=updates modules_install

# DKMS for KVER (default: the running kernel).
KVER ?= $(shell uname -r)
dkms-install:
	rm -rf /usr/src/loop-rework-$(VERSION)
	mkdir -p /usr/src/loop-rework-$(VERSION)
	cp -r Kbuild Makefile dkms.conf drivers include /usr/src/loop-rework-$(VERSION)/
	dkms status loop-rework/$(VERSION) | grep -q . || dkms add loop-rework/$(VERSION)
	dkms build --force loop-rework/$(VERSION) -k $(KVER)
	dkms install --force loop-rework/$(VERSION) -k $(KVER)

deps:
	./scripts/install-deps.sh

lint:
	./scripts/lint.sh

selftests:
	$(MAKE) -C selftests

check:
	./scripts/check.sh

vm: deps
	./scripts/vm.sh

bench:
	./scripts/install-deps.sh bench
	BENCH_PARALLEL=$(BENCH_PARALLEL) ./scripts/bench.sh

DURATION ?= 1800
soak: deps
	LOOP_KERNELS=debug-6.12 LOOP_SOAK=$(DURATION) ./scripts/check.sh


clean:
	$(MAKE) -C $(KDIR) M=$(PWD) clean 2>/dev/null || true
	$(MAKE) -C selftests clean
	rm -rf build

# Each race test must fail on a driver with its race put back.
prove-races: deps
	./scripts/prove-race-tests.sh
