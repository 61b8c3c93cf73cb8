//! Least privilege: leave root for an ordinary account, keep no capability (but, on request,
//! the one that binds ports below 1024), forbid gaining privileges again, and confine the
//! process to the files it serves (Landlock) and to the system calls a file server needs
//! (a seccomp deny-list).
//!
//! Credentials, `no_new_privs`, Landlock and seccomp filters all belong to a thread, and a
//! thread passes them on to the threads it starts. [`lock_down`] therefore refuses to run
//! while the process has more than one thread: called before the async runtime starts its
//! workers, every thread the server ever has inherits the lock-down.

use std::io;
use std::path::PathBuf;

/// The account to run as: resolved user and group ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name (or its number, as given).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Group id: the one given after `:`, else the user's primary group.
    pub gid: u32,
}

/// Resolve `USER[:GROUP]` (names or numbers) through the system's user database.
pub fn resolve_identity(spec: &str) -> io::Result<Identity> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(invalid(format!(
            "run_as '{spec}': expected USER or USER:GROUP"
        )));
    }
    let entry = match user.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(user),
    }
    .map_err(io::Error::from)?;
    let (uid, primary) = match (entry, user.parse::<u32>()) {
        (Some(u), _) => (u.uid.as_raw(), Some(u.gid.as_raw())),
        // A bare number need not be in the database; it then needs an explicit group.
        (None, Ok(uid)) => (uid, None),
        (None, Err(_)) => return Err(invalid(format!("run_as: no such user '{user}'"))),
    };
    let gid = match group {
        None => primary.ok_or_else(|| {
            invalid(format!(
                "run_as: user id {uid} is not in the user database; give its group as {uid}:GROUP"
            ))
        })?,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => nix::unistd::Group::from_name(g)
                .map_err(io::Error::from)?
                .map(|grp| grp.gid.as_raw())
                .ok_or_else(|| invalid(format!("run_as: no such group '{g}'")))?,
        },
    };
    if uid == 0 {
        return Err(invalid(
            "run_as names root: nothing would be dropped".to_string(),
        ));
    }
    Ok(Identity {
        name: user.to_string(),
        uid,
        gid,
    })
}

/// The effective user id of the process.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The real user id of the process.
pub fn real_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The real group id of the process.
pub fn real_gid() -> u32 {
    rustix::process::getgid().as_raw()
}

/// How many threads the process has (from `/proc/self/task`).
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The names of the process's threads (for a message).
fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim_end().to_string())
        .collect()
}

/// What [`lock_down`] is to do.
#[derive(Debug, Clone, Default)]
pub struct LockDown {
    /// Switch to this account (root only), clearing supplementary groups.
    pub run_as: Option<Identity>,
    /// Keep `CAP_NET_BIND_SERVICE` after the switch (FTP active mode's data connections from
    /// port 20), and no other capability.
    pub keep_bind_service: bool,
    /// Directories (or files) that stay readable and writable.
    pub read_write: Vec<PathBuf>,
    /// Directories (or files) that stay readable.
    pub read_only: Vec<PathBuf>,
    /// Apply Landlock (where the kernel has it).
    pub landlock: bool,
    /// Install the seccomp deny-list.
    pub seccomp: bool,
}

/// What [`lock_down`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedDown {
    /// Landlock's outcome.
    pub landlock: Landlock,
    /// Whether the seccomp filter is in place.
    pub seccomp: bool,
    /// Paths given that do not exist (so nothing beneath them is reachable).
    pub missing: Vec<PathBuf>,
}

/// Landlock's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landlock {
    /// Not asked for.
    Off,
    /// Every restriction asked for is enforced.
    Full,
    /// Enforced as far as this kernel's Landlock version goes.
    Partial,
    /// The kernel lacks Landlock (or has it disabled): nothing enforced.
    Unsupported,
}

/// Drop privileges and confine the process, in this order: supplementary groups, group, user
/// (all three ids, so none can be taken back), capabilities (none, or only
/// `CAP_NET_BIND_SERVICE`), `no_new_privs`, Landlock, seccomp. Fails, changing nothing, when
/// the process has more than one thread: the others would keep their privileges.
pub fn lock_down(plan: &LockDown) -> io::Result<LockedDown> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot drop privileges with {threads} threads running ({}): only the calling thread would change",
            thread_names().join(", ")
        )));
    }
    if let Some(id) = &plan.run_as {
        switch_user(id, plan.keep_bind_service)?;
    }
    rustix::thread::set_no_new_privs(true)?;
    let mut missing = Vec::new();
    let landlock = if plan.landlock {
        landlock_restrict(&plan.read_write, &plan.read_only, &mut missing)?
    } else {
        Landlock::Off
    };
    if plan.seccomp {
        install_deny_list()?;
    }
    Ok(LockedDown {
        landlock,
        seccomp: plan.seccomp,
        missing,
    })
}

fn switch_user(id: &Identity, keep_bind_service: bool) -> io::Result<()> {
    use rustix::process::{Gid, Uid};
    use rustix::thread::{CapabilitySet, CapabilitySets};
    if effective_uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "switching user needs root",
        ));
    }
    let gid = Gid::from_raw(id.gid);
    let uid = Uid::from_raw(id.uid);
    rustix::thread::set_thread_groups(&[])?;
    rustix::thread::set_thread_res_gid(gid, gid, gid)?;
    if keep_bind_service {
        rustix::thread::set_keep_capabilities(true)?;
    }
    rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    if keep_bind_service {
        rustix::thread::set_keep_capabilities(false)?;
        let keep = CapabilitySet::NET_BIND_SERVICE;
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: keep,
                permitted: keep,
                inheritable: CapabilitySet::empty(),
            },
        )?;
    }
    // The switch must be one way: getting root back has to fail.
    if rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT).is_ok() {
        return Err(io::Error::other("could regain root after dropping it"));
    }
    Ok(())
}

fn landlock_restrict(
    read_write: &[PathBuf],
    read_only: &[PathBuf],
    missing: &mut Vec<PathBuf>,
) -> io::Result<Landlock> {
    use landlock::{
        ABI, Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus,
    };
    let abi = ABI::V6;
    let err = |e: landlock::RulesetError| io::Error::other(format!("landlock: {e}"));
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?;
    let rules = read_write
        .iter()
        .map(|p| (p, AccessFs::from_all(abi)))
        .chain(read_only.iter().map(|p| (p, AccessFs::from_read(abi))));
    for (path, mut access) in rules {
        let Ok(meta) = std::fs::metadata(path) else {
            missing.push(path.clone());
            continue;
        };
        if !meta.is_dir() {
            // Directory rights on a file are an error: keep those that apply to files.
            access &= AccessFs::from_file(abi);
        }
        let fd = PathFd::new(path)
            .map_err(|e| io::Error::other(format!("landlock: {}: {e}", path.display())))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(err)?;
    }
    let status = ruleset.restrict_self().map_err(err)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Landlock::Full,
        RulesetStatus::PartiallyEnforced => Landlock::Partial,
        RulesetStatus::NotEnforced => Landlock::Unsupported,
    })
}

/// System calls a file server never makes and an attacker would want: debugging other
/// processes, mounts and namespaces, kernel modules and BPF, keyrings, the clock, reboot, and
/// running programs. Anything else is allowed: an allow-list would have to follow every
/// system call the C library, tokio and the TLS and SSH code may make, on every kernel.
const DENIED: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_syslog,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_personality,
    libc::SYS_quotactl,
    libc::SYS_vhangup,
];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Install the seccomp filter on every thread: a denied call fails with `EPERM`; a call made
/// through another architecture's entry (32-bit x86 on x86-64) ends the process, and x32 calls
/// fail with `ENOSYS`, so neither gets round the list by another number.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn install_deny_list() -> io::Result<()> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, sock_filter};
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    // Offsets in `struct seccomp_data`.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let mut prog = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, RET_KILL_PROCESS),
        stmt(BPF_LD | BPF_W | BPF_ABS, NR),
    ];
    if cfg!(target_arch = "x86_64") {
        // x32 numbers carry bit 30.
        prog.push(jump(BPF_JMP | BPF_JGE | BPF_K, 0x4000_0000, 0, 1));
        prog.push(stmt(BPF_RET | BPF_K, RET_ERRNO | libc::ENOSYS as u32));
    }
    for nr in DENIED {
        prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *nr as u32, 0, 1));
        prog.push(stmt(BPF_RET | BPF_K, RET_ERRNO | libc::EPERM as u32));
    }
    prog.push(stmt(BPF_RET | BPF_K, RET_ALLOW));
    let len =
        u16::try_from(prog.len()).map_err(|_| io::Error::other("seccomp: filter too long"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_mut_ptr(),
    };
    // A filter needs no_new_privs (or CAP_SYS_ADMIN); set it here too so this works alone.
    rustix::thread::set_no_new_privs(true)?;
    #[allow(unsafe_code)]
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program
    // and keeps no pointer to it. The flag and operation are plain integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(()),
        rc if rc > 0 => Err(io::Error::other(format!(
            "seccomp: thread {rc} could not take the filter"
        ))),
        _ => Err(io::Error::last_os_error()),
    }
}

/// No filter is written for this architecture.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn install_deny_list() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "seccomp: no filter for this architecture",
    ))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "privilege::tests::confined_child";

    /// Run [`confined_child`] in a new process (what it does can't be undone) and return its
    /// output, asserting it succeeded.
    fn run_child(mode: &str, dir: &std::path::Path) -> String {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                CHILD,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FERRY_SYS_CHILD", mode)
            .env("FERRY_SYS_CHILD_DIR", dir)
            .output()
            .expect("child runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(text.contains("1 passed"), "child ran no test:\n{text}");
        text
    }

    /// The half of the tests below that runs in the child process.
    #[test]
    #[ignore = "run in a child process by the Landlock and seccomp tests"]
    fn confined_child() {
        let mode = std::env::var("FERRY_SYS_CHILD").expect("FERRY_SYS_CHILD");
        let dir = PathBuf::from(std::env::var_os("FERRY_SYS_CHILD_DIR").expect("dir"));
        match mode.as_str() {
            "landlock" => {
                let mut missing = Vec::new();
                let status = landlock_restrict(
                    &[dir.clone(), dir.join("absent")],
                    &[PathBuf::from("/dev/null")],
                    &mut missing,
                )
                .expect("landlock");
                assert_eq!(missing, vec![dir.join("absent")]);
                if status == Landlock::Unsupported {
                    println!("LANDLOCK-UNSUPPORTED");
                    return;
                }
                std::fs::write(dir.join("inside"), b"x").expect("write inside the root");
                std::fs::read("/dev/null").expect("read a read-only file");
                let outside = std::fs::read("/etc/passwd").expect_err("outside is refused");
                assert_eq!(outside.kind(), io::ErrorKind::PermissionDenied);
                let write_ro = std::fs::write("/dev/null", b"x").expect_err("read-only");
                assert_eq!(write_ro.kind(), io::ErrorKind::PermissionDenied);
                println!("LANDLOCK-ENFORCED {status:?}");
            }
            "seccomp" => {
                install_deny_list().expect("seccomp");
                let status = std::fs::read_to_string("/proc/self/status").expect("status");
                assert!(status.contains("Seccomp:\t2"), "{status}");
                let exec = std::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg("true")
                    .status()
                    .expect_err("exec is denied");
                assert_eq!(exec.raw_os_error(), Some(libc::EPERM), "{exec}");
                // Everything else still works.
                std::fs::write(dir.join("after"), b"y").expect("write after the filter");
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
                println!("SECCOMP-ENFORCED");
            }
            "switch" | "switch-keep" => {
                let nobody = resolve_identity("nobody").expect("nobody");
                let keep = mode == "switch-keep";
                switch_user(&nobody, keep).expect("switch");
                let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
                let field = |k: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(k))
                        .map(str::trim)
                        .unwrap_or_default()
                        .to_string()
                };
                let uid = nobody.uid;
                assert_eq!(field("Uid:"), format!("{uid}\t{uid}\t{uid}\t{uid}"));
                assert_eq!(field("Groups:"), "");
                // CAP_NET_BIND_SERVICE is bit 10.
                let caps = if keep {
                    "0000000000000400"
                } else {
                    "0000000000000000"
                };
                assert_eq!(field("CapEff:"), caps, "{status}");
                assert_eq!(field("CapPrm:"), caps, "{status}");
                assert_eq!(field("CapInh:"), "0000000000000000", "{status}");
                println!("SWITCHED");
            }
            other => panic!("unknown mode {other}"),
        }
    }

    #[test]
    fn landlock_confines_to_the_roots_given() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_child("landlock", dir.path());
        if out.contains("LANDLOCK-UNSUPPORTED") {
            eprintln!("SKIPPED landlock_confines_to_the_roots_given: this kernel lacks Landlock");
            return;
        }
        assert!(out.contains("LANDLOCK-ENFORCED"), "{out}");
        assert!(dir.path().join("inside").exists());
    }

    #[test]
    fn seccomp_denies_exec_and_allows_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_child("seccomp", dir.path());
        assert!(out.contains("SECCOMP-ENFORCED"), "{out}");
        assert!(dir.path().join("after").exists());
    }

    #[test]
    fn switching_user_keeps_no_capability_or_only_bind_service() {
        if effective_uid() != 0 {
            eprintln!(
                "SKIPPED switching_user_keeps_no_capability_or_only_bind_service: needs root"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for mode in ["switch", "switch-keep"] {
            let out = run_child(mode, dir.path());
            assert!(out.contains("SWITCHED"), "{out}");
        }
    }

    #[test]
    fn lock_down_refuses_while_other_threads_run() {
        // The test harness runs this on a thread of its own: two at least.
        let err = lock_down(&LockDown {
            landlock: true,
            ..LockDown::default()
        })
        .expect_err("refused");
        assert!(err.to_string().contains("threads running"), "{err}");
        assert!(!rustix::thread::no_new_privs().unwrap());
    }

    #[test]
    fn identities_resolve_by_name_and_number() {
        let root = resolve_identity("root").expect_err("root drops nothing");
        assert!(root.to_string().contains("root"), "{root}");
        let nobody = resolve_identity("nobody").expect("nobody exists");
        assert_ne!(nobody.uid, 0);
        let numeric = resolve_identity(&format!("{}:{}", nobody.uid, nobody.gid)).unwrap();
        assert_eq!((numeric.uid, numeric.gid), (nobody.uid, nobody.gid));
        assert!(resolve_identity("ferry-no-such-user").is_err());
        assert!(resolve_identity("nobody:ferry-no-such-group").is_err());
        assert!(
            resolve_identity("4242").is_err(),
            "a bare unknown id needs a group"
        );
        assert_eq!(resolve_identity("4242:4243").unwrap().gid, 4243);
        assert!(resolve_identity("nobody:").is_err());
    }
}
