//! The one table from storage errors to `SSH_FX_*` statuses.

use ferry_sftp_proto::{Status, StatusCode};
use ferry_vfs::ErrorKind;

use crate::fs::FsError;

/// The status code for a storage error kind. v3 has few codes: what is not "missing" or
/// "refused" is a failure, with the message saying which.
pub(crate) fn code_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NO_SUCH_FILE,
        ErrorKind::PermissionDenied => StatusCode::PERMISSION_DENIED,
        ErrorKind::Unsupported => StatusCode::OP_UNSUPPORTED,
        // v3 has no "try again later"; the message says it.
        ErrorKind::Unavailable
        | ErrorKind::AlreadyExists
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::DirectoryNotEmpty
        | ErrorKind::InsufficientStorage
        | ErrorKind::InvalidName
        | ErrorKind::Other => StatusCode::FAILURE,
    }
}

/// The `STATUS` answering a failed operation. Messages come from storage, which keeps host
/// paths out of them.
pub(crate) fn status_for(err: &FsError) -> Status {
    match err {
        FsError::Storage(e) => Status::new(code_for(e.kind), e.message.clone()),
        FsError::Unsupported(why) => Status::new(StatusCode::OP_UNSUPPORTED, *why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_refused_have_their_codes() {
        assert_eq!(code_for(ErrorKind::NotFound), StatusCode::NO_SUCH_FILE);
        assert_eq!(
            code_for(ErrorKind::PermissionDenied),
            StatusCode::PERMISSION_DENIED
        );
        assert_eq!(code_for(ErrorKind::DirectoryNotEmpty), StatusCode::FAILURE);
        assert_eq!(code_for(ErrorKind::Unsupported), StatusCode::OP_UNSUPPORTED);
        let s = status_for(&FsError::Unsupported("no"));
        assert_eq!(s.code, StatusCode::OP_UNSUPPORTED);
    }
}
