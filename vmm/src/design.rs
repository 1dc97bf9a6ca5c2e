//! Design notes and measurements (documentation only).
//!
//! # Processes
//!
//! ```text
//! a3s-box run/start ──spawn──► a3s-box __monitor <id>  ──spawn (PDEATHSIG=KILL)──► qemu-system-x86_64
//!   (exits, or follows         (setsid when detached;     │ -serial file:console.log
//!    output.log when           PDEATHSIG=KILL to the CLI   │ virtio-serial port "a3s.ctl" on a unix
//!    in the foreground)        when in the foreground)     │ socket chardev  ◄──► a3s-guest-init (PID 1)
//! a3s-box exec/stop/kill ──monitor.sock (same framing)──►  monitor
//! ```
//!
//! A box outlives the CLI with `run -d`, and `logs`, `exec`, `stop` come from other CLI
//! processes, so one process per box owns the VM: the monitor (a re-exec of the CLI binary, so
//! there is nothing extra to install). QEMU gets `PR_SET_PDEATHSIG=SIGKILL` from the monitor's
//! main thread and cannot outlive it. A foreground `run` makes the monitor die with the CLI the
//! same way, so killing the CLI (even with SIGKILL) leaves no QEMU behind; the box record then
//! shows `exited` with "monitor process ended unexpectedly" as soon as anyone reads it (state is
//! reconciled against the recorded monitor pid). The monitor writes the workload's output to
//! `output.log` (JSON lines, base64 data), which `logs` and the foreground `run` read; that makes
//! `logs -f` and foreground output one mechanism, and output survives every client.
//!
//! # Host↔guest channel
//!
//! `/dev/vhost-vsock` is absent on these hosts. A virtio-serial port on a unix-socket chardev
//! (`server=on,wait=off`) had the best round trip in the design measurements (≈ 0.2-0.3 ms,
//! against ≈ 0.4 ms for vhost-user vsock) and needs no extra daemon. One port carries every
//! session, multiplexed by the frame's session number ([`crate::proto`]): framed, capped at
//! 1 MiB, versioned, JSON control messages tagged by name (an unknown message is refused, not
//! misread), raw data frames for stdio. The guest speaks first (`Ready`); every host-side wait
//! has a timeout.
//!
//! # Stopping
//!
//! When the workload has exited (or `stop` ran out of time and killed it), the host sends
//! `PowerOff`; guest-init calls `sync(2)`, answers `Synced`, and the monitor kills QEMU then.
//! The sync is what keeps the box's writes: it returns after the guest's FLUSH, which QEMU
//! turns into `fdatasync` of the disk file; `reboot(2)` unmounts nothing, so the kernel's
//! shutdown and the ACPI power-off that followed added no safety and about 35 ms per stop under
//! TCG (a cold `run` outside its phases: 221 → 190 ms median, 6 alternating pairs). A `--rm`
//! box without volumes skips even the sync (its disks go with it). `tests/e2e/perf.rs` checks
//! that a workload's last, unsynced writes are there at the next start.
//!
//! # Boot
//!
//! - Kernel: Debian's 6.12 cloud kernel. Its bzImage is zstd-compressed; the host extracts the
//!   uncompressed ELF once (cached under `cache/kernels/`) and QEMU boots it through its PVH
//!   note, skipping real-mode setup and in-guest decompression (design measurement: 5.7 s
//!   bzImage vs 3.2-3.8 s PVH under TCG).
//! - Modules: virtio-mmio is a module in this kernel (virtio-console is built in). The host
//!   decompresses `virtio_mmio.ko.xz` (and its `depends=`) into the base initrd; guest-init
//!   loads it with `finit_module` before looking for the port. q35 needs no module.
//! - Machine: `-M microvm` with qboot. Under TCG it hung in 2 of the first 3 boots on this host
//!   (10-20 % in the design measurements), in the kernel's delay-loop/TSC calibration. With
//!   `lpj=4000000 tsc_early_khz=2400000` on the command line (TCG only) the calibration is skipped
//!   and 16 of 16 boots completed. The rate given must be the TSC's real one (under TCG the
//!   host's): the fixed 2.4 GHz once used made the guest clock run 8.2 % fast on a 2.6 GHz host.
//!   Plain boxes get the host's rate, measured once per host boot (`clock::host_tsc_khz`); TEE
//!   boxes keep the fixed rate on their measured command line (a measurement must not depend on
//!   the host's CPU) and guest-init scales the kernel's tick with adjtimex from the rate the
//!   host sends with the workload, which also sets the guest's wall clock
//!   (`tests/e2e/clock.rs`: both within 0.01 % of the host over 30 s). The watchdog stays as a safety net: an attempt
//!   that burns more than 25 s of QEMU CPU time per vCPU (or 180 s of wall time) without `Ready`
//!   is killed and retried, up to 3 attempts. CPU time rather than wall time, because a busy
//!   host stretches wall time but a stalled guest spins. `A3S_BOX_MACHINE=q35` switches to q35
//!   (no hang seen, about 1 s slower).
//! - Rootfs (since issue 15): not in the initrd. Each image is built once into an erofs image
//!   with its dm-verity tree appended (the image store's `rootfs/<digest>.erofs`), attached as a
//!   read-only virtio-blk disk (serial `a3s-root`); guest-init opens it with dm-verity against
//!   `a3s.root=<blocks>,<root hash>` before saying Ready, mounts it as the overlay's lower layer
//!   over the box's writable disk (serial `a3s-rw`, sparse, persistent until `rm`; ext4 made by
//!   the host, or dm-integrity + dm-crypt made in the guest for TEE boxes) and switches root.
//!   The initrd (guest-init, modules, and for TEE boxes `mke2fs`) is the same for every image.
//!   Why: the initramfs root bound image size to guest RAM (about a third of it; nginx needed
//!   640 MiB, postgres 1536 MiB), grew boot time with image size, and lost every write at stop.
//! - Command line: `console=ttyS0 quiet nokaslr mitigations=off cryptomgr.notests
//!   no_timer_check tsc=reliable panic=-1 reboot=t transparent_hugepage=never initcall_blacklist=…
//!   ([`crate::qemu::SKIPPED_INITCALLS`]) [lpj=… tsc_early_khz=…] rdinit=/.a3s/init
//!   a3s.image=<digest> a3s.root=<blocks>,<hash> a3s.rw=ext4|crypt <--kernel-arg…>`, recorded
//!   in the box state (`kernel_cmdline`).
//! - guest-init is linked statically with the gnu target and `-C target-feature=+crt-static`
//!   (`scripts/build-guest-init`), no musl toolchain needed.
//!
//! # Measurements (`bench/coldstart.sh`, this host: 2 cores shared with four other builds, TCG)
//!
//! | what | figure |
//! |---|---|
//! | raw floor: same QEMU/kernel/cmdline, busybox `/init` that powers off | median 3.37 s |
//! | `a3s-box run --rm busybox true` (debug build), 10 alternating runs | median 4.71 s (ratio 1.40) |
//! | `a3s-box exec BOX true` round trip (CLI spawn, monitor, guest spawn) | median 31 ms |
//! | host RSS of an idle box, 256 MiB guest | QEMU 243 MiB + monitor 11 MiB |
//! | second session, release guest-init (2.1 MB), busier host, 8 runs | floor 4.03 s, a3s-box 5.12 s (ratio 1.27) |
//! | same session: exec round trip / idle RSS | 50 ms / QEMU 240 MiB + monitor 16 MiB |
//!
//! The aim of the issue (overhead under 10 %) is not met yet: the absolute overhead is ≈ 1.1-1.3 s.
//!
//! Where the 1.3 s goes (from `inspect` boot figures): QEMU start to `Ready` is 4.2-5.0 s of which
//! the guest kernel accounts for 3.3-3.7 s (`guest_uptime_ms`); asset preparation and monitor
//! spawn add 0.1-0.3 s, and the exit (record, power-off, `--rm`) about 0.27 s. The kernel part is
//! longer than the floor's because the initrd is larger (busybox rootfs + a 3.3 MB debug
//! guest-init vs 2 MB) and because of the virtio-mmio module and the virtio-serial device probe.
//! QEMU's RSS is mostly TCG's code buffer (≈ 50 MiB), the private mapping of the 57 MB vmlinux
//! (≈ 53 MiB) and guest RAM actually touched (≈ 94 MiB); under KVM the first two disappear.
//! Not yet tried: dropping the serial console, a smaller initrd (guest-init without debug
//! assertions, compressed per-image archives for large images), loading `virtio_mmio` earlier, and
//! recording the exit before the guest's power-off.
//!
//! # Idle memory and the TCG translation buffer (issue 22)
//!
//! An idle busybox box's QEMU (256 MiB guest, free page reporting on) held 66 MiB in one 1 GiB
//! anonymous mapping: TCG's translation buffer, QEMU's own memory, which the balloon cannot
//! return. `-accel tcg,tb-size=N` bounds it ([`crate::tcg`]). Alternating boxes on a loaded
//! host (anon RSS after 25 s idle / QEMU CPU seconds for boot + 25 s idle, two rounds):
//!
//! | tb-size | anon RSS | QEMU CPU |
//! |---|---|---|
//! | 1 GiB (QEMU's default) | 208 MiB | 3.5-3.9 s |
//! | 48 MiB | 185 MiB | 3.5-3.6 s |
//! | 32 MiB (the default now) | 168 MiB | 3.6 s |
//! | 24 MiB | 159 MiB | 3.9-4.1 s |
//! | 16 MiB | 150 MiB | 4.1-4.6 s |
//!
//! Guest RAM in base pages ([`crate::host_pages`]) and free page reporting from 32 KiB blocks
//! ([`crate::balloon::REPORTING_ORDER_ARG`]): `bench/footprint.sh 3`, 256 MiB guests, the idle
//! (restored) busybox box 160.1 MiB anonymous with QEMU's huge pages against 137.8 without, in
//! one run (ratio to the raw floor 1.24 → 1.02); a cold box changes little (its guest touched
//! those pages while booting). Order 3 against the kernel's 9 alone: 5 MiB less per restored box.
//!
//! What remains in the guest's share (≈ 110 MiB before the two changes above): the kernel image, struct pages and reserved
//! memory (≈ 43 MiB of the 256 never reach the guest's MemTotal), slab (≈ 18 MiB, 8 MiB of it
//! 4 KiB kmallocs), the initramfs (guest-init and modules, kept in a tmpfs), and free blocks
//! smaller than the 2 MiB reporting order; guest free memory in larger blocks is returned.
//!
//! # Starting from a saved VM (issue 22, [`crate::template`])
//!
//! A plain box restores a VM that was booted once to guest-init's template point and saved,
//! instead of booting its kernel. Mechanism, in short (details in [`crate::template`]):
//! - the template VM is the box's QEMU command line with the box's own parts left out: its
//!   kernel command line stops at `rdinit=` and says `a3s.template=1`, its disks are empty
//!   placeholder files, its NIC has no port forwards. guest-init there mounts, loads every
//!   module except `virtio_blk`, opens the channel, says `Ready`; the host
//!   stops it and saves it with `migrate` to `file:` under `mapped-ram` (zero pages are holes).
//!   Kept as `cache/templates/<key>/` (0700, state 0600), keyed by the template's QEMU
//!   arguments and the identity of the kernel, initrd, firmware and QEMU binary;
//! - a restore is the box's own QEMU command line (its drives, chardevs, passt socket) with
//!   the template's kernel command line and `-incoming defer`, then `migrate-incoming` and
//!   `cont`. Migration carries device state, not backends, so the disks are the box's own;
//!   the disk driver was never loaded in the template, so it probes the box's disks afresh
//!   (capacity, serial). No hotplug or `blockdev-reopen` is needed. A user network's NIC is
//!   the same device with the same MAC in every box (only passt, its backend, is the box's):
//!   its driver binds in the template, which also brings every NIC up (filling its receive
//!   ring); the box adds only addresses and routes. A restored QEMU translates every guest path
//!   afresh under TCG, so work moved into the template is saved twice: the guest's `network`
//!   step of a restored start went from 72-90 to 43-47 ms (5 alternating pairs, busy host),
//!   the whole `run --rm busybox true` from 878 to 814 ms median. A box with published ports has a second NIC, its
//!   inbound link ([`crate::net::InboundTap`]), also the same device and MAC in every box: it
//!   restores from a template of its own, which the first such box makes;
//! - the first message is `Resume`: the box's `a3s.*` arguments (root hash, writable layer,
//!   network), 64 bytes of host entropy (`RNDADDENTROPY` then `RNDRESEEDCRNG`) and the clock;
//!   guest-init then does what a cold boot does from its command line and says `Ready` again.
//!   Hostname, environment and the workload come with `Start` as on a cold boot.
//!
//! Never restored: TEE boxes (the measurement covers the boot), boxes with their own
//! `--kernel-arg`s. Boxes with volumes and pod VMs (virtiofs) restore templates with as many
//! shares; boxes on bridge or pod networks templates with as many NICs of the template's own,
//! readdressed by the guest after `Resume` (see [`crate::template`]). A template that does not match
//! its record, or that QEMU refuses, is removed and the box boots cold; `inspect` says why
//! (`.boot.cold_reason`), `.boot.restored` and `.timings` (`vm_restore` instead of `vm_boot`)
//! say which path a start took. `A3S_BOX_RESTORE=off` turns it off.
//!
//! Tried and dropped: the template's RAM as a file mapped copy-on-write into each box
//! (`memory-backend-file,share=off` + `x-ignore-shared`): 89 ms to a guest answer instead of
//! 120 ms and unchanged pages shared between boxes, but QEMU's free page reporting discards a
//! private file mapping with `fallocate(PUNCH_HOLE)` on the file itself ("Discarding RAM in
//! private file mappings is possibly dangerous"), which would zero the template under every
//! box; with the file read-only QEMU refuses every discard and the box never returns memory.
//!
//! What a restore shares with the other boxes of its template, as any VM snapshot clone does:
//! the kernel's per-boot secrets drawn before the save (its stack canary, slab freelist
//! randomisation, hash seeds); everything drawn from the CRNG after `Resume` is fresh
//! (`boot_id` is made on first read, after it). Visible differences from a cold boot:
//! `/proc/cmdline` is the template's (no `a3s.root=`/`a3s.net=`), and the guest's uptime counts
//! from the template's boot.
//!
//! Measured (prototype, QEMU 10.0.2, TCG, 512 MiB, 1 vCPU, product command line, busy host,
//! 10 alternating runs, QEMU spawn to a `Pong` from guest-init): cold boot median 2.518 s;
//! restore from a `mapped-ram` file (98 MiB of data in a 542 MB sparse file, page cache warm)
//! 0.120 s (ratio 0.048); copy-on-write file RAM 0.089 s (0.035). The product's whole start
//! (`bench/restore.sh 10`, release, load average 3.4-5 from other builds on the 2 cores):
//! `run --rm busybox true` cold median 4.495 s, restored 1.274 s, **ratio 0.283**; making the
//! template took 4.7 s once. Second run after binding the NIC driver in the template (load
//! 2.6-3): cold 3.758 s, restored 1.124 s, **ratio 0.299**; phases cold: prepare 44, monitor
//! 9, plan 4, `vm_boot` 3017, `guest_setup` 231 ms; restored: prepare 43, monitor 9, plan 12,
//! `vm_restore` 502, `guest_setup` 145 ms; the rest of either (≈ 0.4 s) is the workload, its
//! exit, the record and `--rm`. Of `vm_restore`, QEMU's start and loading the state is
//! 90-300 ms (`restore_load_ms`); the guest's `Resume` (instrumented once, debug guest-init,
//! load ≈ 5): `virtio_blk` loading and probing ≈ 140-220 ms, eth0 ≈ 60-90 ms, dm-verity and
//! the erofs mount ≈ 150-250 ms: the guest's share of a cold start after its kernel. Idle QEMU RSS of a restored 512 MiB box: 174 MiB anonymous
//! against 194 MiB for a cold one (the pages the guest zeroed while booting are not loaded).
//!
//! # Block-device root filesystems (issue 15), measured
//!
//! Release build, quiet 2-core host, TCG, 5 alternating rounds of `run --rm IMAGE true` against
//! the initramfs-root build of the same day (`55c7a95`):
//!
//! | image | initramfs root | block-device root |
//! |---|---|---|
//! | busybox (2 MiB) | 2.24 s | 2.77 s (+0.53 s) |
//! | nginx (176 MiB unpacked) | 5.06 s, needs 768 MiB | 2.67 s at the default 512 MiB |
//!
//! `bench/images.sh 3`: boot ratios to busybox 1.05 (nginx), 1.08 (python3), 1.01 (postgres,
//! 421 MiB), 0.96 (an image with a 600 MiB file): boot time no longer grows with the image. Disk
//! per image 1.37× its unpacked size (gzip blobs + erofs + verity tree; the unpacked tree is
//! deleted), where the initramfs design kept about 4×. First start of an image (unpack, mkfs.erofs,
//! veritysetup) 1.9-4.2× a cached start. The unpacked tree is only `mkfs.erofs`'s input, so it
//! goes to a private directory in `/dev/shm` when it fits (`a3s_image`'s `store::scratch`): on
//! the CI machines' disk, unpacking python3's 9 400 files took 25 s and deleting them 17 s, and
//! its first `run` went from 41.7 to 11.4 s (debug build, with gzip inflate optimised in the dev
//! profile; the second run 5.2 s).
//!
//! Where busybox's extra 0.5 s goes (guest-init timestamps, `T <uptime ms>`): the eight extra
//! modules (virtio_blk, dm_mod, dm_bufio, reed_solomon, dm_verity, libcrc32c, erofs, overlay)
//! take about 30 ms each under TCG whatever their size, 0.32 s in all; finding the
//! disks, dm-verity, the erofs and ext4 mounts, the overlay and the switch 0.13 s. A kernel with
//! these built in would remove most of it; Debian's cloud kernel has them as modules.
//!
//! The modules go into the initrd without their signatures ([`crate::module_signature`]): the
//! kernel verified each PKCS#7 signature on every load (nothing enforces it, and the initrd's
//! bytes are the host's own or covered by the launch measurement). An earlier note here said
//! stripping them changed nothing; that trial reused the cached initrd, whose key did not cover
//! how modules are stored (it does now). `bench/coldstart.sh 6`, quiet, before and after in one
//! session: vm_boot median 2814 → 2550 ms; TEE boxes load 26 modules and gained more (A/B:
//! 350-1100 ms under load). The guest's steps in that boot (`boot.guest_steps`): kernel to
//! guest-init 1297 ms, modules 306, network 47, root 123; 706 ms pass before the guest's clock
//! starts (QEMU, firmware).
//!
//! Each module also loses what its loader would process for tracing ([`crate::module_trim`]):
//! the ftrace call-site list, which the kernel live-patches site by site (loading xfs, as a
//! probe: 1.25 s with it, 0.5 s without), and its BTF. Our modules are small: the modules step
//! went from 327 to 309 ms (medians of 6 alternating cold boots, quiet), and 200 MiB read
//! through dm-verity and erofs took no longer (the call sites stay calls to `__fentry__`,
//! which returns at once).
//!
//! # Volumes and bind mounts ([`crate::fs`])
//!
//! virtiofs is built into the 6.12 cloud kernel and 9p is not, so each `-v` mount is one
//! `virtiofsd` (crates.io 1.14, `--sandbox=namespace` as root, `--sandbox=none` otherwise,
//! `--readonly` for `:ro`) and one `vhost-user-fs-device` (virtio-mmio; `-pci` on q35). vhost-user
//! needs guest RAM the daemon can map, so a VM with shares runs with
//! `-object memory-backend-memfd,id=mem,size=<mem>M,share=on -machine memory-backend=mem`; a VM
//! without shares keeps anonymous RAM. The guest mounts each tag with `MS_NODEV` (plus
//! `MS_RDONLY` for `:ro`, so writes fail with EROFS even before the daemon refuses them) before
//! the workload starts; a failed mount stops the box with exit 125 rather than let the workload
//! write into RAM. Each daemon serves one connection and exits when QEMU disconnects, so every
//! boot attempt spawns fresh ones; [`crate::fs::Daemons`] kills the daemon's process group (the
//! namespace sandbox forks a worker) and waits until it is gone, and `PR_SET_PDEATHSIG` covers a
//! dying monitor.
//!
//! Measured with `bench/volumes.sh` (debug build, TCG, 2 shared cores, 3 alternating boots each):
//! boot to `Ready` median 5434 ms without a volume and 5900 ms with one (≈ 0.47 s for memfd RAM,
//! the daemon's start and the device probe together, which is why memfd is used only with
//! shares). Sequential 64 MiB, 1 MiB blocks: virtiofs bind mount write 26.6 / read 44.0 MB/s,
//! guest tmpfs 28.6 / 117.1 MB/s, initramfs root 33.3 / 113.5 MB/s (bind/tmpfs: write 0.93,
//! read 0.38). Under TCG the guest's own memory copies are the bottleneck, so writes barely
//! differ; reads pay the FUSE round trips through the vhost-user queue.
