//! What an upload reads from: bytes, a local file, or an async stream.

use std::fmt;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::io::AsyncReadExt;

use crate::error::{Result, StorageError};

/// A stream of bytes to upload. An `Err` item aborts the upload
/// ([`StorageError::Body`]) and leaves no object behind.
pub type UploadStream = BoxStream<'static, std::io::Result<Bytes>>;

/// How many bytes a file body reads at a time.
const FILE_CHUNK: usize = 1 << 20;

/// The bytes of an upload.
///
/// ```
/// # use sonic_storage::Body;
/// let from_memory: Body = b"RIFF....WAVE".to_vec().into();
/// let from_disk = Body::file("portrait.png");
/// let from_stream = Body::stream(futures::stream::iter([Ok(bytes::Bytes::from_static(b"ab"))]));
/// # let _ = (from_memory, from_disk, from_stream);
/// ```
#[non_exhaustive]
pub enum Body {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A local file, read as the upload proceeds.
    File(PathBuf),
    /// An async stream of chunks of any size.
    Stream(UploadStream),
}

impl Body {
    /// A body that reads the file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Body::File(path.into())
    }

    /// A body that reads `stream`.
    pub fn stream(
        stream: impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Self {
        Body::Stream(stream.boxed())
    }

    /// Turns the body into a stream. A file is opened here, so a missing file is reported as
    /// [`StorageError::Io`] with its path before anything is uploaded.
    pub async fn into_stream(self) -> Result<UploadStream> {
        match self {
            Body::Bytes(bytes) => Ok(stream::once(async move { Ok(bytes) }).boxed()),
            Body::Stream(stream) => Ok(stream),
            Body::File(path) => {
                let file =
                    tokio::fs::File::open(&path)
                        .await
                        .map_err(|source| StorageError::Io {
                            path: path.clone(),
                            source,
                        })?;
                Ok(
                    stream::try_unfold((file, path), |(mut file, path)| async move {
                        let mut buf = BytesMut::with_capacity(FILE_CHUNK);
                        while buf.len() < FILE_CHUNK {
                            let read = file.read_buf(&mut buf).await.map_err(|e| {
                                std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                            })?;
                            if read == 0 {
                                break;
                            }
                        }
                        if buf.is_empty() {
                            Ok(None)
                        } else {
                            Ok(Some((buf.freeze(), (file, path))))
                        }
                    })
                    .boxed(),
                )
            }
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Bytes(bytes) => write!(f, "Body::Bytes({} bytes)", bytes.len()),
            Body::File(path) => write!(f, "Body::File({})", path.display()),
            Body::Stream(_) => f.write_str("Body::Stream(..)"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body::Bytes(bytes)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::Bytes(bytes.into())
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Body::Bytes(Bytes::from_static(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body::Bytes(text.into())
    }
}

impl From<UploadStream> for Body {
    fn from(stream: UploadStream) -> Self {
        Body::Stream(stream)
    }
}
