//! Sets `cfg(sev_guest)` when the build host is an SEV-SNP guest, so hardware tests run there.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(sev_guest)");
    println!("cargo::rerun-if-changed=/dev/sev-guest");
    if std::path::Path::new("/dev/sev-guest").exists()
        || std::path::Path::new("/sys/kernel/config/tsm/report").is_dir()
    {
        println!("cargo::rustc-cfg=sev_guest");
    }
}
