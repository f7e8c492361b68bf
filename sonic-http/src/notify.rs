//! Bucket notifications: which objects were created, from the JSON a bucket posts.
//!
//! [`parse_notification`] reads the shapes S3-style stores send:
//!
//! - **AWS S3** (also through an SNS HTTP subscription, whose `Message` holds the S3 JSON) and
//!   **MinIO** webhooks: `{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket":
//!   {"name": ...}, "object": {"key": ..., "size": ...}}}]}` (MinIO names events
//!   `s3:ObjectCreated:Put` and wraps the records in `{"EventName": ..., "Key": "bucket/key",
//!   "Records": [...]}`). Keys are URL-encoded there, `+` for a space, and are decoded.
//! - **Aliyun OSS** through MNS: `{"events": [{"eventName": "ObjectCreated:PutObject", "oss":
//!   {"bucket": {"name": ...}, "object": {"key": ..., "size": ...}}}]}`, and through
//!   EventBridge as a CloudEvent: `{"specversion": "1.0", "type":
//!   "oss:ObjectCreated:PutObject", "data": {"eventName": ..., "oss": {...}}}` (a JSON array
//!   of them for a batch; the bare `data` for a binary-mode CloudEvent). OSS keys are plain.
//!
//! Only object-created events are returned; removals, restores, S3's `s3:TestEvent` and SNS's
//! subscription messages give no event (not an error). The steps of a multipart upload that
//! create no object yet (`InitiateMultipartUpload`, `UploadPart`, `UploadPartCopy`) are not
//! creations; its `CompleteMultipartUpload` is.
//!
//! [`job_input_of`] then says which job's input a key is.

use serde_json::Value;
use sonic_storage::{InputKind, JobRef, ObjectKey};

/// One object-created event from a bucket notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    /// The bucket, when the event names it.
    pub bucket: Option<String>,
    /// The object's key, decoded (as stored, relative to the bucket).
    pub key: String,
    /// The object's size in bytes, when the event gives it.
    pub size: Option<u64>,
}

/// Why a notification body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotificationError {
    /// Not JSON, or JSON of no known notification shape.
    #[error("malformed bucket notification: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
}

fn malformed(reason: impl Into<String>) -> NotificationError {
    NotificationError::Malformed {
        reason: reason.into(),
    }
}

/// How a record's key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyEncoding {
    /// S3 and MinIO: form-urlencoded (`+` for a space, `%XX`).
    Form,
    /// OSS: as stored.
    Plain,
}

/// Whether an event name (`ObjectCreated:Put`, `s3:ObjectCreated:Copy`,
/// `oss:ObjectCreated:PutObject` ...) says an object now exists.
fn is_created(event_name: &str) -> bool {
    if !event_name.contains("ObjectCreated") {
        return false;
    }
    // The steps of a multipart upload before it completes create no object.
    let action = event_name.rsplit(':').next().unwrap_or(event_name);
    !matches!(
        action,
        "InitiateMultipartUpload" | "UploadPart" | "UploadPartCopy"
    )
}

/// Decodes a form-urlencoded string: `+` is a space, `%XX` a byte; an invalid escape is kept
/// as it is, and bytes that are not UTF-8 are replaced (the `application/x-www-form-urlencoded`
/// parsing rules).
fn form_decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = bytes
                    .get(i + 1)
                    .and_then(|&h| hex(h))
                    .zip(bytes.get(i + 2).and_then(|&l| hex(l)));
                if let Some((high, low)) = pair {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A size given as a number or as a string of digits.
fn size_of(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// One event record: `{"eventName": ..., "s3" | "oss": {"bucket": ..., "object": ...}}`.
/// `event_name` overrides the record's own (a CloudEvent's `type`).
fn record(
    value: &Value,
    event_name: Option<&str>,
    out: &mut Vec<ObjectCreated>,
) -> Result<(), NotificationError> {
    let Some(fields) = value.as_object() else {
        return Err(malformed("an event record is not a JSON object"));
    };
    let (body, encoding) = if let Some(s3) = fields.get("s3") {
        (s3, KeyEncoding::Form)
    } else if let Some(oss) = fields.get("oss") {
        (oss, KeyEncoding::Plain)
    } else {
        return Err(malformed("an event record has neither `s3` nor `oss`"));
    };
    let name = event_name
        .or_else(|| fields.get("eventName").and_then(Value::as_str))
        .ok_or_else(|| malformed("an event record has no `eventName`"))?;
    if !is_created(name) {
        return Ok(());
    }
    let object = body
        .get("object")
        .ok_or_else(|| malformed(format!("the `{name}` record has no object")))?;
    let key = object
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("the `{name}` record's object has no key")))?;
    let key = match encoding {
        KeyEncoding::Form => form_decode(key),
        KeyEncoding::Plain => key.to_owned(),
    };
    out.push(ObjectCreated {
        bucket: body
            .get("bucket")
            .and_then(|bucket| bucket.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        key,
        size: size_of(object.get("size")),
    });
    Ok(())
}

fn records(
    list: &Value,
    what: &str,
    out: &mut Vec<ObjectCreated>,
) -> Result<(), NotificationError> {
    let Some(list) = list.as_array() else {
        return Err(malformed(format!("`{what}` is not a list")));
    };
    list.iter().try_for_each(|value| record(value, None, out))
}

/// How deep notifications may nest (an SNS envelope, a batch of CloudEvents).
const MAX_DEPTH: usize = 4;

fn notification(
    value: &Value,
    depth: usize,
    out: &mut Vec<ObjectCreated>,
) -> Result<(), NotificationError> {
    if depth > MAX_DEPTH {
        return Err(malformed("notifications nested too deep"));
    }
    if let Some(batch) = value.as_array() {
        return batch
            .iter()
            .try_for_each(|item| notification(item, depth + 1, out));
    }
    let Some(fields) = value.as_object() else {
        return Err(malformed("the body is not a JSON object"));
    };
    // AWS S3 and MinIO (MinIO's `EventName`/`Key` wrapper around the same records).
    if let Some(list) = fields.get("Records") {
        let before = out.len();
        records(list, "Records", out)?;
        let empty = list.as_array().is_some_and(Vec::is_empty);
        if empty
            && out.len() == before
            && let (Some(name), Some(Value::String(path))) = (
                fields.get("EventName").and_then(Value::as_str),
                fields.get("Key"),
            )
            && is_created(name)
            && let Some((bucket, key)) = path.split_once('/')
        {
            // A MinIO wrapper without records: its `Key` is `bucket/key`, not encoded.
            out.push(ObjectCreated {
                bucket: Some(bucket.to_owned()),
                key: key.to_owned(),
                size: None,
            });
        }
        return Ok(());
    }
    // Aliyun OSS through MNS.
    if let Some(list) = fields.get("events") {
        return records(list, "events", out);
    }
    // A CloudEvent (Aliyun EventBridge): the event type, and the OSS record as its data.
    if fields.contains_key("specversion") {
        let kind = fields.get("type").and_then(Value::as_str);
        return match fields.get("data") {
            Some(data) if data.get("oss").is_some() || data.get("s3").is_some() => {
                record(data, kind, out)
            }
            // Another source's event, or one of no object (a bucket created): nothing created.
            _ if kind.is_none_or(|kind| !is_created(kind)) => Ok(()),
            _ => Err(malformed(
                "a CloudEvent of a created object carries no object",
            )),
        };
    }
    // A single record: the data of a binary-mode CloudEvent.
    if fields.contains_key("eventName") && (fields.contains_key("oss") || fields.contains_key("s3"))
    {
        return record(value, None, out);
    }
    // An SNS HTTP delivery: the S3 notification is the JSON text of `Message`.
    if let Some(kind) = fields.get("Type").and_then(Value::as_str)
        && fields.contains_key("TopicArn")
    {
        if kind != "Notification" {
            // SubscriptionConfirmation, UnsubscribeConfirmation: no event.
            return Ok(());
        }
        let message = fields
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("an SNS notification without a `Message`"))?;
        let inner: Value = serde_json::from_str(message)
            .map_err(|e| malformed(format!("the SNS message is not JSON: {e}")))?;
        return notification(&inner, depth + 1, out);
    }
    // The test event S3 sends when notifications are configured.
    if fields.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(());
    }
    Err(malformed(
        "no known notification shape (expected S3/MinIO `Records`, OSS `events` or a CloudEvent)",
    ))
}

/// The object-created events of a bucket notification body (see the module's documentation
/// for the shapes), in order. Events of other kinds are skipped, so a removal gives an empty
/// list.
///
/// # Errors
/// [`NotificationError::Malformed`] when the body is not JSON, or is JSON of no known shape
/// (a record without an event name, an object without a key ...).
pub fn parse_notification(body: &[u8]) -> Result<Vec<ObjectCreated>, NotificationError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let mut out = Vec::new();
    notification(&value, 0, &mut out)?;
    Ok(out)
}

/// The job input a bucket key is: `…/inputs/{tenant}/{job}/{image|audio}.{ext}` at the end of
/// the key (any store prefix before `inputs/` is allowed, such as `prod/`), with valid tenant
/// and job ids ([`JobRef::parse`]), a stem of exactly `image` or `audio` and an extension of 1
/// to 8 ASCII letters or digits (what [`JobRef::input_key`] writes).
///
/// `None` for any other key: another file name, more segments after the job, an invalid id,
/// or a key that is no valid [`ObjectKey`] (an empty, `.` or `..` segment, a leading `/`, a
/// control or forbidden character).
pub fn job_input_of(key: &str) -> Option<(JobRef, InputKind)> {
    ObjectKey::new(key).ok()?;
    let mut segments = key.rsplit('/');
    let file = segments.next()?;
    let job = segments.next()?;
    let tenant = segments.next()?;
    if segments.next()? != "inputs" {
        return None;
    }
    let (stem, ext) = file.split_once('.')?;
    let kind = match stem {
        "image" => InputKind::Image,
        "audio" => InputKind::Audio,
        _ => return None,
    };
    if ext.is_empty() || ext.len() > 8 || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let job = JobRef::parse(tenant, job).ok()?;
    Some((job, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(bucket: Option<&str>, key: &str, size: Option<u64>) -> ObjectCreated {
        ObjectCreated {
            bucket: bucket.map(str::to_owned),
            key: key.to_owned(),
            size,
        }
    }

    fn parse(body: &str) -> Vec<ObjectCreated> {
        parse_notification(body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// An AWS S3 event notification, version 2.1, as S3 posts it.
    const AWS_PUT: &str = r#"{
      "Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": "2025-03-01T10:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {
          "s3SchemaVersion": "1.0",
          "configurationId": "sonic-inputs",
          "bucket": {"name": "sonic-prod", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::sonic-prod"},
          "object": {"key": "inputs/acme/job-1/image.png", "size": 6892, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6DCD90281E5"}
        }
      }]
    }"#;

    #[test]
    fn aws_s3_put() {
        assert_eq!(
            parse(AWS_PUT),
            vec![created(
                Some("sonic-prod"),
                "inputs/acme/job-1/image.png",
                Some(6892)
            )]
        );
    }

    #[test]
    fn aws_keys_are_form_urldecoded() {
        let body = AWS_PUT.replace(
            "inputs/acme/job-1/image.png",
            "my+uploads/caf%C3%A9+%282%29/a%2Bb%25.png",
        );
        assert_eq!(parse(&body)[0].key, "my uploads/café (2)/a+b%.png");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz%4"), "%zz%4");
        assert_eq!(form_decode("%e2%82%ac"), "€");
        assert_eq!(form_decode("%FF"), "\u{FFFD}");
    }

    #[test]
    fn minio_webhook_with_its_wrapper() {
        let body = r#"{
          "EventName": "s3:ObjectCreated:Put",
          "Key": "sonic/prod/inputs/acme/j1/audio wav/audio.wav",
          "Records": [{
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2025-03-01T10:00:00.123Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "172.17.0.1"},
            "responseElements": {"x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8", "x-amz-request-id": "1829D0C7F1B5C2A8", "x-minio-deployment-id": "f1e2d3c4", "x-minio-origin-endpoint": "http://172.17.0.2:9000"},
            "s3": {
              "s3SchemaVersion": "1.0",
              "configurationId": "Config",
              "bucket": {"name": "sonic", "ownerIdentity": {"principalId": "minioadmin"}, "arn": "arn:aws:s3:::sonic"},
              "object": {"key": "prod%2Finputs%2Facme%2Fj1%2Faudio+wav%2Faudio.wav", "size": 117420, "eTag": "3b2c1f0e9d8a7b6c5d4e3f2a1b0c9d8e", "contentType": "audio/wav", "userMetadata": {"content-type": "audio/wav"}, "sequencer": "1829D0C7F1C6A0B2"}
            },
            "source": {"host": "172.17.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"}
          }]
        }"#;
        assert_eq!(
            parse(body),
            vec![created(
                Some("sonic"),
                "prod/inputs/acme/j1/audio wav/audio.wav",
                Some(117420)
            )]
        );
        // The wrapper alone (no records): its `Key` is bucket/key.
        let bare = r#"{"EventName":"s3:ObjectCreated:CompleteMultipartUpload","Key":"sonic/inputs/acme/j1/image.png","Records":[]}"#;
        assert_eq!(
            parse(bare),
            vec![created(Some("sonic"), "inputs/acme/j1/image.png", None)]
        );
    }

    #[test]
    fn all_creations_count_and_removals_do_not() {
        let event = |name: &str, key: &str| {
            format!(
                r#"{{"eventName":"{name}","s3":{{"bucket":{{"name":"b"}},"object":{{"key":"{key}","size":1}}}}}}"#
            )
        };
        let body = format!(
            r#"{{"Records":[{},{},{},{},{},{}]}}"#,
            event("ObjectCreated:Copy", "a"),
            event("ObjectRemoved:Delete", "b"),
            event("s3:ObjectCreated:CompleteMultipartUpload", "c"),
            event("s3:ObjectRemoved:DeleteMarkerCreated", "d"),
            event("ObjectCreated:Post", "e"),
            event("ObjectRestore:Completed", "f"),
        );
        let keys: Vec<_> = parse(&body).into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["a", "c", "e"]);
        // A removal alone: no event, no error.
        assert_eq!(
            parse(&format!(
                r#"{{"Records":[{}]}}"#,
                event("ObjectRemoved:Delete", "x")
            )),
            vec![]
        );
        // A removed object has no size: still fine.
        let removed = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"k","sequencer":"1"}}}]}"#;
        assert_eq!(parse(removed), vec![]);
        assert!(is_created("oss:ObjectReplication:ObjectCreated"));
        assert!(is_created("ObjectCreated:PutSymlink"));
        assert!(!is_created("ObjectCreated:InitiateMultipartUpload"));
        assert!(!is_created("oss:ObjectCreated:UploadPart"));
        assert!(!is_created("ObjectCreated:UploadPartCopy"));
        assert!(!is_created("ObjectDownloaded:GetObject"));
    }

    /// An OSS event notification as MNS delivers it.
    const OSS_MNS: &str = r#"{
      "events": [{
        "eventName": "ObjectCreated:PutObject",
        "eventSource": "acs:oss",
        "eventTime": "2025-03-01T10:00:00.000Z",
        "eventVersion": "1.0",
        "oss": {
          "bucket": {"arn": "acs:oss:cn-hangzhou:1148930107246818:sonic-oss", "name": "sonic-oss", "ownerIdentity": "1148930107246818", "virtualBucket": ""},
          "object": {"deltaSize": 6892, "eTag": "D41D8CD98F00B204E9800998ECF8427E", "key": "inputs/acme/job 2/image.png", "size": 6892},
          "ossSchemaVersion": "1.0",
          "ruleId": "sonic-inputs"
        },
        "region": "cn-hangzhou",
        "requestParameters": {"sourceIPAddress": "198.51.100.20"},
        "responseElements": {"requestId": "5F0B2E6C1D4A3B2C1D0E9F8A"},
        "userIdentity": {"principalId": "1148930107246818"}
      }]
    }"#;

    #[test]
    fn oss_through_mns_keeps_keys_plain() {
        assert_eq!(
            parse(OSS_MNS),
            vec![created(
                Some("sonic-oss"),
                "inputs/acme/job 2/image.png",
                Some(6892)
            )]
        );
        // A `+` or `%` in an OSS key is the key's own.
        let plus = OSS_MNS.replace("job 2/image.png", "a+b%20/image.png");
        assert_eq!(parse(&plus)[0].key, "inputs/acme/a+b%20/image.png");
        let removed = OSS_MNS.replace("ObjectCreated:PutObject", "ObjectRemoved:DeleteObject");
        assert_eq!(parse(&removed), vec![]);
    }

    /// An OSS event as EventBridge delivers it (CloudEvents 1.0, structured mode).
    const OSS_CLOUDEVENT: &str = r#"{
      "datacontenttype": "application/json;charset=utf-8",
      "aliyunaccountid": "1148930107246818",
      "data": {
        "eventName": "ObjectCreated:PutObject",
        "eventSource": "acs:oss",
        "eventTime": "2025-03-01T10:00:00.000Z",
        "eventVersion": "1.0",
        "oss": {
          "bucket": {"arn": "acs:oss:cn-hangzhou:1148930107246818:sonic-oss", "name": "sonic-oss", "ownerIdentity": "1148930107246818"},
          "object": {"deltaSize": 117420, "eTag": "3B2C1F0E9D8A7B6C5D4E3F2A1B0C9D8E", "key": "prod/inputs/acme/j1/audio.wav", "size": 117420},
          "ossSchemaVersion": "1.0",
          "ruleId": "sonic-inputs"
        },
        "region": "cn-hangzhou",
        "requestParameters": {"sourceIPAddress": "198.51.100.20"},
        "responseElements": {"requestId": "5F0B2E6C1D4A3B2C1D0E9F8B"},
        "userIdentity": {"principalId": "1148930107246818"}
      },
      "subject": "acs:oss:cn-hangzhou:1148930107246818:sonic-oss/prod/inputs/acme/j1/audio.wav",
      "source": "acs.oss",
      "type": "oss:ObjectCreated:PutObject",
      "aliyunpublishtime": "2025-03-01T10:00:00.321Z",
      "specversion": "1.0",
      "aliyuneventbusname": "default",
      "id": "5F0B2E6C1D4A3B2C1D0E9F8B",
      "time": "2025-03-01T10:00:00Z",
      "aliyunregionid": "cn-hangzhou"
    }"#;

    #[test]
    fn oss_through_eventbridge() {
        let expected = vec![created(
            Some("sonic-oss"),
            "prod/inputs/acme/j1/audio.wav",
            Some(117420),
        )];
        assert_eq!(parse(OSS_CLOUDEVENT), expected);
        // A batch of CloudEvents, and the bare data of a binary-mode one.
        let batch = format!("[{OSS_CLOUDEVENT},{OSS_CLOUDEVENT}]");
        assert_eq!(parse(&batch).len(), 2);
        let value: Value = serde_json::from_str(OSS_CLOUDEVENT).unwrap();
        assert_eq!(parse(&value["data"].to_string()), expected);
        // The CloudEvent's type decides.
        let removed = OSS_CLOUDEVENT.replace(
            r#""type": "oss:ObjectCreated:PutObject""#,
            r#""type": "oss:ObjectRemoved:DeleteObject""#,
        );
        assert_eq!(parse(&removed), vec![]);
        // Another source's CloudEvent: nothing created.
        assert_eq!(
            parse(
                r#"{"specversion":"1.0","type":"oss:BucketCreated:PutBucket","source":"acs.oss","id":"1","data":{}}"#
            ),
            vec![]
        );
    }

    #[test]
    fn sns_envelopes_and_test_events() {
        let envelope = serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:sonic-inputs",
            "Subject": "Amazon S3 Notification",
            "Message": AWS_PUT,
            "Timestamp": "2025-03-01T10:00:00.500Z",
            "SignatureVersion": "1",
        });
        assert_eq!(parse(&envelope.to_string()), parse(AWS_PUT));
        let confirm = r#"{"Type":"SubscriptionConfirmation","MessageId":"1","TopicArn":"arn:aws:sns:eu-west-1:123456789012:sonic-inputs","Message":"You have chosen to subscribe","SubscribeURL":"https://sns.example/confirm"}"#;
        assert_eq!(parse(confirm), vec![]);
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2025-03-01T10:00:00.000Z","Bucket":"sonic-prod","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}"#;
        assert_eq!(parse(test_event), vec![]);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            "",
            "not json",
            "{\"Records\": [",
            "42",
            "{}",
            r#"{"hello":"world"}"#,
            r#"{"Records": {"eventName": "ObjectCreated:Put"}}"#,
            r#"{"Records": [{"eventName": "ObjectCreated:Put"}]}"#,
            r#"{"Records": [{"s3": {"object": {"key": "k"}}}]}"#,
            r#"{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"size": 1}}}]}"#,
            r#"{"events": [7]}"#,
        ] {
            let err = parse_notification(body.as_bytes()).expect_err(body);
            assert!(matches!(err, NotificationError::Malformed { .. }), "{body}");
            assert!(err.to_string().starts_with("malformed bucket notification"));
        }
    }

    #[test]
    fn job_inputs_from_keys() {
        let (job, kind) = job_input_of("inputs/acme/j1/image.png").unwrap();
        assert_eq!(
            (job.tenant.as_str(), job.job.as_str(), kind),
            ("acme", "j1", InputKind::Image)
        );
        let (job, kind) = job_input_of("prod/inputs/acme/j1/audio.wav").unwrap();
        assert_eq!(
            (job.to_string(), kind),
            (
                JobRef::parse("acme", "j1").unwrap().to_string(),
                InputKind::Audio
            )
        );
        assert_eq!(
            job_input_of("a/b/inputs/t-1/job_2.x/audio.m4a").map(|(_, kind)| kind),
            Some(InputKind::Audio)
        );
        for key in [
            "inputs/acme/j1/video.mp4",
            "inputs/acme/j1/x/image.png",
            "inputs/acme/j1/image.png/extra",
            "inputs/ac me/j1/image.png",
            "inputs/-acme/j1/image.png",
            "inputs/acme/../image.png",
            "inputs/../j1/image.png",
            "inputs/acme/j1/../image.png",
            "inputs//j1/image.png",
            "inputs/acme//image.png",
            "/inputs/acme/j1/image.png",
            "prod//inputs/acme/j1/image.png",
            "outputs/acme/j1/image.png",
            "acme/j1/image.png",
            "inputs/acme/j1/image",
            "inputs/acme/j1/image.",
            "inputs/acme/j1/image.tar.gz",
            "inputs/acme/j1/Image.png",
            "inputs/acme/j1/image.png ",
            "inputs/acme/j1/",
            "",
        ] {
            assert_eq!(job_input_of(key), None, "{key}");
        }
    }
}
