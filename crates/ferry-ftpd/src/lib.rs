//! FTP server.
