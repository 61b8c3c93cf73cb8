//! The only crate of Ferry that makes raw system calls (an audit point, as vsftpd's
//! `sysutil.c`). Every system call goes through rustix's safe wrappers, so even here `unsafe`
//! is denied, but for two calls into the C library ([`release_free_memory`] and the seccomp
//! filter's installation in [`privilege`]), allowed where they are made.
//!
//! # Layout
//! - [`sendfile`], [`set_tcp_cork`]: zero-copy file → socket (Linux `sendfile(2)`), in full segments.
//! - [`open_read_cached`]: open a file from the kernel's caches only, or say it would wait.
//! - [`accept_nonblocking`]: take a waiting connection, non-blocking, with its peer address.
//! - [`raise_nofile_limit`]: lift the soft open-file limit to the hard limit at start;
//!   [`nofile_limit`] reads it, [`set_nofile_limit`] lowers it; [`is_out_of_descriptors`] recognises the errors of a full
//!   descriptor table.
//! - [`DirWatcher`], [`fs_magic`]: hear of changes in directories (inotify), and what kind of
//!   file system a file is on; [`fs_space`]: its size, free space and limits (`statvfs`).
//! - [`try_lock_exclusive`]: an advisory lock (`flock`) that marks a file as in use.
//! - [`release_free_memory`]: hand the memory the allocator holds free back to the system.
//! - [`monotonic_micros`]: `CLOCK_MONOTONIC`, as systemd's notification protocol wants it.
//! - [`privilege`]: leave root for an account, `no_new_privs`, Landlock, a seccomp deny-list.

pub mod privilege;

use std::io;
use std::os::fd::AsFd;

/// Copy up to `count` bytes from `file` (at its current position, which advances) to
/// `socket`, inside the kernel. Returns the bytes sent; 0 means end of file.
///
/// With a non-blocking socket this returns `WouldBlock` when the socket buffer is full; call it
/// from `tokio::net::TcpStream::try_io`. Reading the file may block on a cold page cache, like
/// any `read(2)`.
pub fn sendfile<S: AsFd, F: AsFd>(socket: S, file: F, count: usize) -> io::Result<usize> {
    rustix::fs::sendfile(socket, file, None, count).map_err(io::Error::from)
}

/// Hold back partial TCP segments on `socket` (`TCP_CORK`) while `on`; turning it off sends
/// what is held at once. For bulk sends: full-sized segments, fewer packets per megabyte.
pub fn set_tcp_cork<S: AsFd>(socket: S, on: bool) -> io::Result<()> {
    rustix::net::sockopt::set_tcp_cork(socket, on).map_err(io::Error::from)
}

/// Take a connection waiting on `listener` (a non-blocking listening socket), as a
/// non-blocking, close-on-exec stream, with its peer's address: one `accept4(2)`, where
/// accepting and then switching the stream to non-blocking takes two calls. `WouldBlock`
/// when no connection is waiting.
pub fn accept_nonblocking<L: AsFd>(
    listener: L,
) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
    use rustix::net::SocketFlags;
    let (fd, peer) =
        rustix::net::acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    let stream = std::net::TcpStream::from(fd);
    let peer = peer
        .and_then(|p| std::net::SocketAddr::try_from(p).ok())
        .ok_or_else(|| io::Error::other("accepted a connection that is not IPv4 or IPv6"))?;
    Ok((stream, peer))
}

/// What kind of file [`open_read_cached`] opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenedKind {
    File,
    Directory,
    Other,
}

/// Open `path` (relative, resolved beneath `dir` the way `openat2`'s `RESOLVE_BENEATH` does:
/// no `..` or absolute symlink out, no magic links) for reading, but only if the kernel can do
/// it from its caches (`RESOLVE_CACHED`): `WouldBlock` when a lookup would wait for storage.
/// Returns the file with its kind and size (`statx` without syncing with a remote server).
///
/// This lets an async worker open a file in place of handing the work to a thread; any error
/// means "take the slow path", which gives the authoritative answer. The file is opened
/// non-blocking so that a FIFO does not wait for a writer.
pub fn open_read_cached<D: AsFd>(
    dir: D,
    path: &str,
) -> io::Result<(std::fs::File, OpenedKind, u64)> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxFlags};
    let fd = rustix::fs::openat2(
        dir,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::CACHED,
    )?;
    let st = rustix::fs::statx(
        &fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::TYPE | StatxFlags::SIZE,
    )?;
    let kind = match FileType::from_raw_mode(u32::from(st.stx_mode)) {
        FileType::RegularFile => OpenedKind::File,
        FileType::Directory => OpenedKind::Directory,
        _ => OpenedKind::Other,
    };
    Ok((std::fs::File::from(fd), kind, st.stx_size))
}

/// What [`stat_cached`] found at a path (symbolic links followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedStat {
    pub kind: OpenedKind,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub nlink: u64,
    /// `st_dev` as `stat(2)` gives it.
    pub dev: u64,
    pub ino: u64,
}

/// The metadata of `path` (relative, resolved beneath `dir` as [`open_read_cached`] does,
/// symbolic links followed), but only if the kernel can tell it from its caches: `WouldBlock`
/// when a lookup would wait for storage. As with [`open_read_cached`], any error means "take
/// the slow path" (on a thread that may block), which gives the authoritative answer.
pub fn stat_cached<D: AsFd>(dir: D, path: &str) -> io::Result<CachedStat> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxFlags};
    let fd = rustix::fs::openat2(
        dir,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::CACHED,
    )?;
    let st = rustix::fs::statx(
        &fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::BASIC_STATS,
    )?;
    let kind = match FileType::from_raw_mode(u32::from(st.stx_mode)) {
        FileType::RegularFile => OpenedKind::File,
        FileType::Directory => OpenedKind::Directory,
        _ => OpenedKind::Other,
    };
    Ok(CachedStat {
        kind,
        size: st.stx_size,
        mtime: st.stx_mtime.tv_sec,
        mode: u32::from(st.stx_mode) & 0o7777,
        nlink: u64::from(st.stx_nlink),
        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
    })
}

/// The `O_NONBLOCK` open flag, for opening something that might be a FIFO without blocking.
pub const O_NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;

/// `O_PATH | O_NOFOLLOW`: a handle on a name's inode that can neither read nor write it, and
/// opening it touches nothing (no FIFO, device or symlink is followed or opened).
pub const O_PATH_NOFOLLOW: i32 =
    (rustix::fs::OFlags::PATH.bits() | rustix::fs::OFlags::NOFOLLOW.bits()) as i32;

/// `O_PATH`: a handle on a name's inode (following symbolic links) that can neither read nor
/// write it; opening it touches nothing (a FIFO or device is not opened).
pub const O_PATH: i32 = rustix::fs::OFlags::PATH.bits() as i32;

/// `O_NOFOLLOW`: opening a symbolic link fails instead of following it.
pub const O_NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;

/// `O_DIRECTORY`: opening anything but a directory fails.
pub const O_DIRECTORY: i32 = rustix::fs::OFlags::DIRECTORY.bits() as i32;

/// Take an exclusive advisory lock (`flock(2)`) on the open file behind `fd` without waiting:
/// `Ok(true)` when taken, `Ok(false)` when another open file (in this process or another)
/// holds it. The lock goes when the last descriptor of that open file is closed, so the
/// kernel drops the locks of a process that dies, even by `SIGKILL`.
pub fn try_lock_exclusive<Fd: AsFd>(fd: Fd) -> io::Result<bool> {
    use rustix::fs::{FlockOperation, flock};
    match flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Hand back to the system the memory that the C library's allocator holds free (glibc's
/// `malloc_trim(0)`: free pages inside every arena, not only at the top of the heap). Without
/// it, a burst of allocations freed since (many listings at once) keeps the process as large
/// as at its peak. Walks every arena: call it from a thread that may wait, and not often.
/// Does nothing where the C library has no such call.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` takes no pointer, touches only the allocator's own state under
        // its own locks, and is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Have the C library's allocator map every allocation of `threshold` bytes or more on its
/// own, and unmap it when freed (glibc's `mallopt(M_MMAP_THRESHOLD)`). glibc otherwise raises
/// that threshold each time it frees such a mapping, up to 32 MiB, after which buffers of a
/// few MiB (an S3 upload's parts) come from the arenas and stay with the process once freed:
/// one 200 MiB upload to S3 left the server 100 MiB larger for good. Call it once, at start,
/// before other threads allocate. Does nothing where the C library has no such call.
///
/// The free memory an arena keeps at its top before giving it back is set to twice the
/// threshold, as glibc's own adjustment would (`M_TRIM_THRESHOLD`). Left at its 128 KiB
/// default, the arenas of the runtime's threads hand back (`madvise`) and fault in again the
/// same pages as request buffers of a few dozen KiB come and go: two `madvise` calls per small
/// SFTP download.
pub fn map_large_allocations(threshold: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    {
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        unsafe extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        let value = std::ffi::c_int::try_from(threshold).unwrap_or(std::ffi::c_int::MAX);
        // SAFETY: `mallopt` takes no pointer and changes only the allocator's own settings,
        // under its own lock.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, value);
            mallopt(M_TRIM_THRESHOLD, value.saturating_mul(2));
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = threshold;
}

/// `CLOCK_MONOTONIC` in microseconds: the clock systemd compares a reload's
/// `MONOTONIC_USEC=` with (`std::time::Instant` reads it too, but does not show its value).
pub fn monotonic_micros() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (each session holds one or two
/// descriptors). Returns the limit now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum {
        if limit.current.is_none_or(|cur| cur < hard) {
            limit.current = Some(hard);
            setrlimit(Resource::Nofile, limit).map_err(io::Error::from)?;
        }
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// The soft `RLIMIT_NOFILE` in force (`u64::MAX` when unlimited).
pub fn nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit};
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Set the soft `RLIMIT_NOFILE` to `soft` (at most the hard limit), e.g. to run with fewer
/// descriptors than allowed. Returns the limit now in force.
pub fn set_nofile_limit(soft: u64) -> io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = Some(limit.maximum.map_or(soft, |hard| soft.min(hard)));
    setrlimit(Resource::Nofile, limit).map_err(io::Error::from)?;
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// Whether `e` says the process (`EMFILE`) or the system (`ENFILE`) has no descriptor left.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE) | Some(Errno::NFILE)
    )
}

/// The file system type of the one `fd` is on (`statfs`'s `f_type`, e.g. `0x01021994` tmpfs).
pub fn fs_magic<Fd: AsFd>(fd: Fd) -> io::Result<u64> {
    let st = rustix::fs::fstatfs(fd)?;
    // `f_type` is signed on some targets; the magic numbers are bit patterns.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as u64)
}

/// Size, free space and limits of a file system (`statvfs(3)`'s fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsSpace {
    /// Preferred block size.
    pub block_size: u64,
    /// The unit of the block counts.
    pub fragment_size: u64,
    /// Blocks in all.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Free blocks an unprivileged user may use.
    pub blocks_available: u64,
    /// Inodes in all.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Free inodes an unprivileged user may use.
    pub files_available: u64,
    /// File system id.
    pub fsid: u64,
    /// Mounted read-only.
    pub read_only: bool,
    /// Mounted `nosuid`.
    pub no_suid: bool,
    /// Longest file name.
    pub name_max: u64,
}

/// Size, free space and limits of the file system `fd` is on (`fstatvfs(3)`); works on an
/// `O_PATH` descriptor.
pub fn fs_space<Fd: AsFd>(fd: Fd) -> io::Result<FsSpace> {
    use rustix::fs::StatVfsMountFlags;
    let st = rustix::fs::fstatvfs(fd)?;
    Ok(FsSpace {
        block_size: st.f_bsize,
        fragment_size: st.f_frsize,
        blocks: st.f_blocks,
        blocks_free: st.f_bfree,
        blocks_available: st.f_bavail,
        files: st.f_files,
        files_free: st.f_ffree,
        files_available: st.f_favail,
        fsid: st.f_fsid,
        read_only: st.f_flag.contains(StatVfsMountFlags::RDONLY),
        no_suid: st.f_flag.contains(StatVfsMountFlags::NOSUID),
        name_max: st.f_namemax,
    })
}

/// Directories watched for changes through one non-blocking inotify instance.
///
/// A watched directory reports when an entry is created, removed, renamed, written to or has
/// its attributes changed, or when the directory itself changes, is removed or moved. Reading
/// or opening files does not count. The kernel queues an event before the system call that
/// caused it returns, so after [`DirWatcher::drain`] every change completed earlier is known.
#[derive(Debug)]
pub struct DirWatcher {
    fd: rustix::fd::OwnedFd,
}

/// What [`DirWatcher::drain`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirChange {
    /// Something changed in the directory of this watch.
    Changed(i32),
    /// This watch ended (the directory is gone, or the watch was removed).
    Ended(i32),
    /// Events were lost (the kernel's queue overflowed): assume everything changed.
    Lost,
}

impl DirWatcher {
    pub fn new() -> io::Result<DirWatcher> {
        use rustix::fs::inotify::{CreateFlags, init};
        let fd = init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        Ok(DirWatcher { fd })
    }

    /// Watch the directory open as `dir` (the same inode, whatever its path; through
    /// `/proc/self/fd`, so it needs `/proc`). Returns the watch descriptor; the same
    /// directory watched twice gives the same one.
    pub fn watch<D: AsFd>(&self, dir: D) -> io::Result<i32> {
        use rustix::fs::inotify::{WatchFlags, add_watch};
        use std::os::fd::AsRawFd;
        let path = format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd());
        let flags = WatchFlags::ATTRIB
            | WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::DELETE_SELF
            | WatchFlags::MODIFY
            | WatchFlags::MOVE_SELF
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::ONLYDIR
            // Writes to files already removed from the directory change nothing in it.
            | WatchFlags::EXCL_UNLINK;
        Ok(add_watch(&self.fd, path.as_str(), flags)?)
    }

    /// Stop watching (the kernel then reports [`DirChange::Ended`]).
    pub fn unwatch(&self, wd: i32) {
        let _ = rustix::fs::inotify::remove_watch(&self.fd, wd);
    }

    /// Report every pending event to `seen`, without waiting.
    pub fn drain(&self, mut seen: impl FnMut(DirChange)) {
        use rustix::fs::inotify::{ReadFlags, Reader};
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = Reader::new(&self.fd, &mut buf);
        // Bounded: a directory changing faster than this is read is simply reported changed.
        for _ in 0..100_000 {
            match reader.next() {
                Ok(event) => {
                    let flags = event.events();
                    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        seen(DirChange::Lost);
                    } else if flags.contains(ReadFlags::IGNORED) {
                        seen(DirChange::Ended(event.wd()));
                    } else {
                        seen(DirChange::Changed(event.wd()));
                    }
                }
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return,
                // Anything else: trust nothing that was cached.
                Err(_) => {
                    seen(DirChange::Lost);
                    return;
                }
            }
        }
        seen(DirChange::Lost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn monotonic_micros_advances_with_instant() {
        let (a, start) = (monotonic_micros(), std::time::Instant::now());
        while start.elapsed() < std::time::Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        let b = monotonic_micros();
        assert!(a > 0 && b >= a + 2_000, "{a} then {b}");
    }

    #[test]
    fn fs_space_of_a_file_through_an_o_path_handle() {
        use std::os::unix::fs::OpenOptionsExt;
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("f"), b"1").unwrap();
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_PATH)
            .open(root.path().join("f"))
            .unwrap();
        let space = fs_space(&handle).unwrap();
        assert!(space.blocks > 0 && space.fragment_size > 0, "{space:?}");
        assert!(space.blocks_available <= space.blocks, "{space:?}");
        assert!(space.name_max >= 255, "{space:?}");
    }

    #[test]
    fn dir_watcher_hears_entry_changes_but_not_reads() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a"), b"1").unwrap();
        let dir = std::fs::File::open(root.path()).unwrap();
        let w = DirWatcher::new().unwrap();
        let wd = w.watch(&dir).unwrap();
        assert_eq!(w.watch(&dir).unwrap(), wd, "one watch per directory");
        let changes = || {
            let mut seen = Vec::new();
            w.drain(|c| seen.push(c));
            seen
        };
        assert!(changes().is_empty());
        // Reading is not a change.
        assert_eq!(std::fs::read(root.path().join("a")).unwrap(), b"1");
        assert!(changes().is_empty());
        // Writing, attributes, creating, renaming, removing are.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.path().join("a"))
            .unwrap();
        f.write_all(b"2").unwrap();
        assert!(changes().contains(&DirChange::Changed(wd)));
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(root.path().join("a"), perms).unwrap();
        assert!(changes().contains(&DirChange::Changed(wd)));
        std::fs::write(root.path().join("b"), b"").unwrap();
        assert!(changes().contains(&DirChange::Changed(wd)));
        std::fs::rename(root.path().join("b"), root.path().join("c")).unwrap();
        assert!(changes().contains(&DirChange::Changed(wd)));
        // Writing to a file no longer in the directory is not.
        std::fs::remove_file(root.path().join("a")).unwrap();
        assert!(changes().contains(&DirChange::Changed(wd)));
        f.write_all(b"3").unwrap();
        assert!(changes().is_empty());
        w.unwatch(wd);
        assert!(changes().contains(&DirChange::Ended(wd)));
        assert!(fs_magic(&dir).unwrap() != 0);
    }

    #[test]
    fn accept_nonblocking_says_would_block_then_takes_the_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let e = accept_nonblocking(&l).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let mut tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, peer) = accept_nonblocking(&l).unwrap();
        assert_eq!(peer, tx.local_addr().unwrap());
        // Non-blocking: nothing to read yet is WouldBlock, not a wait.
        let mut buf = [0u8; 4];
        assert_eq!(
            rx.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        tx.write_all(b"ok").unwrap();
        drop(tx);
        rx.set_nonblocking(false).unwrap();
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"ok");
    }

    #[test]
    fn sendfile_copies_from_the_file_position() {
        let mut f = tempfile::tempfile().unwrap();
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&body).unwrap();
        f.seek(SeekFrom::Start(1000)).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        let mut sent = 0;
        loop {
            let n = sendfile(&tx, &f, 64 * 1024).unwrap();
            if n == 0 {
                break;
            }
            sent += n;
        }
        tx.flush().unwrap();
        drop(tx);
        assert_eq!(sent, body.len() - 1000);
        assert_eq!(reader.join().unwrap(), &body[1000..]);
    }

    #[test]
    fn cork_is_set_and_cleared() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(!rustix::net::sockopt::tcp_cork(&tx).unwrap());
        set_tcp_cork(&tx, true).unwrap();
        assert!(rustix::net::sockopt::tcp_cork(&tx).unwrap());
        set_tcp_cork(&tx, false).unwrap();
        assert!(!rustix::net::sockopt::tcp_cork(&tx).unwrap());
    }

    #[test]
    fn o_path_holds_a_name_without_opening_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RUSR).unwrap();
        // A FIFO with no writer would block a plain open; O_PATH does not open it.
        let flags = rustix::fs::OFlags::from_bits_retain(O_PATH_NOFOLLOW as u32);
        let held = rustix::fs::open(&fifo, flags, rustix::fs::Mode::empty()).unwrap();
        std::fs::remove_file(&fifo).unwrap();
        // The inode stays alive while held.
        assert!(rustix::fs::fstat(&held).is_ok());
        // A symlink is held as itself, not followed.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/", &link).unwrap();
        let held = rustix::fs::open(&link, flags, rustix::fs::Mode::empty()).unwrap();
        let st = rustix::fs::fstat(&held).unwrap();
        assert_eq!(
            rustix::fs::FileType::from_raw_mode(st.st_mode),
            rustix::fs::FileType::Symlink
        );
    }

    #[test]
    fn cached_open_stays_beneath_and_reports_kind_and_size() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f"), b"12345").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../..", dir.path().join("sub/up")).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("sub/rel")).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        // The answers, not the cache misses, are under test: warm the caches first (a lookup
        // through the ordinary path) and retry a miss.
        let cached = |path: &str| {
            let _ = std::fs::metadata(dir.path().join(path));
            let mut tries = 0;
            loop {
                match open_read_cached(&root, path) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < 10 => tries += 1,
                    r => break r.unwrap(),
                }
            }
        };
        let (mut f, kind, size) = cached("sub/f");
        assert_eq!((kind, size), (OpenedKind::File, 5));
        let mut body = String::new();
        f.read_to_string(&mut body).unwrap();
        assert_eq!(body, "12345");
        assert_eq!(cached("sub").1, OpenedKind::Directory);
        assert_eq!(cached("sub/rel").2, 5);
        for escape in ["abs", "sub/up/etc/passwd", "../etc/passwd", "/etc/passwd"] {
            // Refused outright, or "would wait" (the slow path, cap-std, refuses it then).
            let e = open_read_cached(&root, escape).unwrap_err();
            let code = e.raw_os_error();
            assert!(
                code == Some(rustix::io::Errno::XDEV.raw_os_error())
                    || e.kind() == io::ErrorKind::WouldBlock,
                "{escape}: {e}"
            );
        }
        // A name never looked up is not cached either way.
        let e = open_read_cached(&root, "missing").unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::WouldBlock
        ));
    }

    #[test]
    fn cached_stat_matches_stat_and_stays_beneath() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f"), b"12345").unwrap();
        std::fs::set_permissions(
            dir.path().join("sub/f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4640),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../..", dir.path().join("sub/up")).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("sub/rel")).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let cached = |path: &str| {
            let _ = std::fs::metadata(dir.path().join(path));
            let mut tries = 0;
            loop {
                match stat_cached(&root, path) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < 10 => tries += 1,
                    r => break r.unwrap(),
                }
            }
        };
        for (path, kind) in [
            ("sub/f", OpenedKind::File),
            ("sub", OpenedKind::Directory),
            ("sub/rel", OpenedKind::File),
        ] {
            let host = std::fs::metadata(dir.path().join(path)).unwrap();
            let expected = CachedStat {
                kind,
                size: host.len(),
                mtime: host.mtime(),
                mode: host.mode() & 0o7777,
                nlink: host.nlink(),
                dev: host.dev(),
                ino: host.ino(),
            };
            assert_eq!(cached(path), expected, "{path}");
        }
        for escape in ["abs", "sub/up/etc/passwd", "../etc/passwd", "/etc/passwd"] {
            let e = stat_cached(&root, escape).unwrap_err();
            let code = e.raw_os_error();
            assert!(
                code == Some(rustix::io::Errno::XDEV.raw_os_error())
                    || e.kind() == io::ErrorKind::WouldBlock,
                "{escape}: {e}"
            );
        }
    }

    #[test]
    fn nofile_limit_is_at_least_what_it_was() {
        let before = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(0);
        assert!(raise_nofile_limit().unwrap() >= before);
    }

    #[test]
    fn out_of_descriptors_is_recognised() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(
            rustix::io::Errno::MFILE.raw_os_error()
        )));
        assert!(!is_out_of_descriptors(&io::Error::other("no")));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(
            rustix::io::Errno::CONNABORTED.raw_os_error()
        )));
    }

    /// Page faults of the calling thread so far (`minflt` in `/proc/thread-self/stat`).
    fn minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(7).unwrap().parse().unwrap()
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_buffer_freed_and_taken_again_keeps_its_pages() {
        map_large_allocations(1 << 20);
        let faults = std::thread::spawn(|| {
            let before = minor_faults();
            for _ in 0..100 {
                // Below the mapping threshold: from the thread's arena, every page written.
                let buffer = vec![1u8; 512 * 1024];
                std::hint::black_box(&buffer);
            }
            minor_faults() - before
        })
        .join()
        .unwrap();
        // Handed back at each free, the 128 pages would fault in again each time (~12,800).
        assert!(faults < 2_000, "{faults} page faults");
    }

    #[test]
    fn a_lock_is_held_per_open_file_until_its_last_descriptor_closes() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("f");
        let first = std::fs::File::create(&path).unwrap();
        assert!(try_lock_exclusive(&first).unwrap());
        let dup = first.try_clone().unwrap();
        let other = std::fs::File::open(&path).unwrap();
        // Another open file of the same process is refused, as another process would be.
        assert!(!try_lock_exclusive(&other).unwrap());
        drop(first);
        assert!(
            !try_lock_exclusive(&other).unwrap(),
            "the dup still holds it"
        );
        drop(dup);
        // Free now; waited for (bounded), as a process another test forks in this moment
        // holds a copy of every descriptor until it execs.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !try_lock_exclusive(&other).unwrap() {
            assert!(std::time::Instant::now() < until, "still locked");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
