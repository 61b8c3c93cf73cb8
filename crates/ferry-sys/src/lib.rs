//! The only crate of Ferry allowed `unsafe` and raw system calls (an audit point, as vsftpd's
//! `sysutil.c`). Empty until zero-copy transfers land.
