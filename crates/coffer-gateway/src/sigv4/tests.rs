//! `verify` against the worked examples of the S3 documentation and against requests signed by
//! the `aws-sigv4` crate the way aws-sdk-s3 signs them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use chrono::{DateTime, TimeZone, Utc};
use zeroize::Zeroizing;

use super::*;
use crate::error::S3ErrorCode;

const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const HOST: &str = "examplebucket.s3.amazonaws.com";

struct Keys(HashMap<String, String>);

impl CredentialProvider for Keys {
    fn secret_key(&self, access_key_id: &str) -> Option<Zeroizing<String>> {
        self.0.get(access_key_id).cloned().map(Zeroizing::new)
    }
}

fn keys() -> Keys {
    Keys(HashMap::from([(KEY.to_owned(), SECRET.to_owned())]))
}

/// 2013-05-24T00:00:00Z, the time of the documented examples.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap()
}

fn parts(method: &str, target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn check(p: &http::request::Parts, now: DateTime<Utc>) -> Result<Verified, S3Error> {
    verify(p, &keys(), "us-east-1", "s3", now)
}

fn code(result: Result<Verified, S3Error>) -> S3ErrorCode {
    result.expect_err("verification should fail").code()
}

fn xml(result: Result<Verified, S3Error>) -> String {
    result.expect_err("verification should fail").to_xml("r")
}

fn authorization(signed: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={KEY}/20130524/us-east-1/s3/aws4_request,\
         SignedHeaders={signed},Signature={signature}"
    )
}

/// The documented GET Object example: `GET /test.txt` with `Range: bytes=0-9`.
fn get_object_headers(auth: &str) -> Vec<(&str, String)> {
    vec![
        ("host", HOST.to_owned()),
        ("range", "bytes=0-9".to_owned()),
        ("x-amz-content-sha256", EMPTY.to_owned()),
        ("x-amz-date", "20130524T000000Z".to_owned()),
        ("authorization", auth.to_owned()),
    ]
}

fn get_object(edit: impl FnOnce(&mut Vec<(&str, String)>), target: &str) -> http::request::Parts {
    let auth = authorization(
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
    let mut headers = get_object_headers(&auth);
    edit(&mut headers);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    parts("GET", target, &headers)
}

fn set(headers: &mut Vec<(&str, String)>, name: &'static str, value: &str) {
    headers.retain(|(n, _)| *n != name);
    headers.push((name, value.to_owned()));
}

#[test]
fn documented_get_object_verifies() {
    let v = check(&get_object(|_| {}, "/test.txt"), t0()).unwrap();
    assert_eq!(v.access_key_id, KEY);
    assert_eq!(v.region, "us-east-1");
    assert_eq!(v.service, "s3");
    assert!(!v.presigned);
    let mut empty = [0u8; 32];
    hex::decode_to_slice(EMPTY, &mut empty).unwrap();
    assert_eq!(v.payload, PayloadMode::Sha256(empty));
}

#[test]
fn documented_get_object_tampered_fails() {
    let tampered_header = get_object(|h| set(h, "range", "bytes=0-10"), "/test.txt");
    let err = xml(check(&tampered_header, t0()));
    assert!(err.contains("<Code>SignatureDoesNotMatch</Code>"), "{err}");
    assert!(err.contains(&format!("<AWSAccessKeyId>{KEY}</AWSAccessKeyId>")));
    assert!(
        err.contains("<CanonicalRequest>GET\n/test.txt\n\nhost:"),
        "{err}"
    );
    assert!(err.contains("<StringToSign>AWS4-HMAC-SHA256\n20130524T000000Z\n"));
    assert!(err.contains("<StringToSignBytes>41 57 53 34"));
    assert!(err.contains(
        "<SignatureProvided>f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41<"
    ));

    let tampered_path = get_object(|_| {}, "/test.txt2");
    assert_eq!(
        code(check(&tampered_path, t0())),
        S3ErrorCode::SignatureDoesNotMatch
    );
    let tampered_query = get_object(|_| {}, "/test.txt?versionId=1");
    assert_eq!(
        code(check(&tampered_query, t0())),
        S3ErrorCode::SignatureDoesNotMatch
    );
    let other_host = get_object(
        |h| set(h, "host", "otherbucket.s3.amazonaws.com"),
        "/test.txt",
    );
    assert_eq!(
        code(check(&other_host, t0())),
        S3ErrorCode::SignatureDoesNotMatch
    );
    let other_secret = Keys(HashMap::from([(KEY.to_owned(), "other".to_owned())]));
    let p = get_object(|_| {}, "/test.txt");
    let err = verify(&p, &other_secret, "us-east-1", "s3", t0()).unwrap_err();
    assert_eq!(err.code(), S3ErrorCode::SignatureDoesNotMatch);
    assert_eq!(
        err.message(),
        "The request signature we calculated does not match the signature you provided. \
         Check your key and signing method."
    );
}

#[test]
fn clock_skew_is_fifteen_minutes_and_checked_after_the_signature() {
    let p = get_object(|_| {}, "/test.txt");
    for seconds in [-900, 900] {
        check(&p, t0() + chrono::Duration::seconds(seconds)).unwrap();
    }
    for seconds in [-901, 901] {
        let result = check(&p, t0() + chrono::Duration::seconds(seconds));
        let err = result.unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::RequestTimeTooSkewed);
        assert_eq!(
            err.message(),
            "The difference between the request time and the current time is too large."
        );
        let xml = err.to_xml("r");
        assert!(
            xml.contains("<RequestTime>20130524T000000Z</RequestTime>"),
            "{xml}"
        );
        assert!(xml.contains("<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>"));
    }
    // A bad signature is reported before the skew.
    let bad = get_object(|h| set(h, "range", "bytes=1-9"), "/test.txt");
    let late = t0() + chrono::Duration::hours(1);
    assert_eq!(code(check(&bad, late)), S3ErrorCode::SignatureDoesNotMatch);
}

#[test]
fn uppercase_signature_is_accepted() {
    let auth = authorization(
        "host;range;x-amz-content-sha256;x-amz-date",
        "F0E8BDB87C964420E857BD35B5D6ED310BD44F0170ABA48DD91039C6036BDB41",
    );
    let p = get_object(|h| set(h, "authorization", &auth), "/test.txt");
    check(&p, t0()).unwrap();
}

#[test]
fn documented_put_object_with_date_and_escaped_key_verifies() {
    let auth = authorization(
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    );
    let p = parts(
        "PUT",
        "/test%24file.text",
        &[
            ("host", HOST),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "x-amz-content-sha256",
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            ),
            ("authorization", &auth),
        ],
    );
    let v = check(&p, t0()).unwrap();
    assert!(matches!(v.payload, PayloadMode::Sha256(_)));
}

#[test]
fn documented_bucket_requests_verify() {
    let signed = "host;x-amz-content-sha256;x-amz-date";
    for (target, signature) in [
        (
            "/?lifecycle",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
        (
            "/?max-keys=2&prefix=J",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ] {
        let auth = authorization(signed, signature);
        let p = parts(
            "GET",
            target,
            &[
                ("host", HOST),
                ("x-amz-content-sha256", EMPTY),
                ("x-amz-date", "20130524T000000Z"),
                ("authorization", &auth),
            ],
        );
        check(&p, t0()).unwrap_or_else(|e| panic!("{target}: {e}"));
    }
}

const CHUNKED_SIGNED: &str =
    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;\
                              x-amz-decoded-content-length;x-amz-storage-class";

fn chunked_put(content_sha256: &str, signed: &str, signature: &str) -> http::request::Parts {
    let auth = authorization(signed, signature);
    parts(
        "PUT",
        "/examplebucket/chunkObject.txt",
        &[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
            ("x-amz-content-sha256", content_sha256),
            ("authorization", &auth),
        ],
    )
}

#[test]
fn documented_streaming_seed_verifies() {
    let seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    // The example does not send x-amz-trailer; leaving it in would leave an x-amz header unsigned.
    let mut p = chunked_put("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", CHUNKED_SIGNED, seed);
    p.headers.remove("x-amz-trailer");
    let v = check(&p, t0()).unwrap();
    let PayloadMode::StreamingSigned {
        signing_key,
        scope,
        amz_date,
        seed_signature,
        trailer,
    } = v.payload
    else {
        panic!("{:?}", v.payload);
    };
    assert_eq!(scope, "20130524/us-east-1/s3/aws4_request");
    assert_eq!(amz_date, "20130524T000000Z");
    assert_eq!(seed_signature, seed);
    assert!(!trailer);
    let date = chrono::NaiveDate::from_ymd_opt(2013, 5, 24).unwrap();
    assert_eq!(*signing_key, *signing_key_of(date));
}

fn signing_key_of(date: chrono::NaiveDate) -> Zeroizing<[u8; 32]> {
    signing_key(SECRET, date, "us-east-1", "s3")
}

#[test]
fn documented_streaming_trailer_seed_verifies() {
    let signed = "content-encoding;host;x-amz-content-sha256;x-amz-date;\
                  x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer";
    let seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
    let p = chunked_put("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", signed, seed);
    let v = check(&p, t0()).unwrap();
    assert!(matches!(
        v.payload,
        PayloadMode::StreamingSigned { trailer: true, .. }
    ));
}

const PRESIGNED_EXAMPLE: &str = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
    &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
    &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
    &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

#[test]
fn documented_presigned_url_verifies_until_it_expires() {
    let p = parts("GET", PRESIGNED_EXAMPLE, &[("host", HOST)]);
    let v = check(&p, t0()).unwrap();
    assert!(v.presigned);
    assert_eq!(v.access_key_id, KEY);
    assert_eq!(v.payload, PayloadMode::Unsigned);
    // Valid to the end of its last second.
    check(&p, t0() + chrono::Duration::seconds(86400)).unwrap();
    let late = t0() + chrono::Duration::seconds(86400) + chrono::Duration::milliseconds(1);
    let err = check(&p, late).unwrap_err();
    assert_eq!(err.code(), S3ErrorCode::AccessDenied);
    assert_eq!(err.message(), "Request has expired");
    let xml = err.to_xml("r");
    assert!(
        xml.contains("<X-Amz-Expires>86400</X-Amz-Expires><Expires>2013-05-25T00:00:00Z</Expires>")
    );
    // Not valid long before X-Amz-Date.
    check(&p, t0() - chrono::Duration::minutes(15)).unwrap();
    let early = check(&p, t0() - chrono::Duration::seconds(901)).unwrap_err();
    assert_eq!(early.message(), "Request is not yet valid");
}

#[test]
fn documented_presigned_url_tampered_fails() {
    let tampered_path = PRESIGNED_EXAMPLE.replace("/test.txt?", "/test.txt2?");
    let extra_param = format!("{PRESIGNED_EXAMPLE}&versionId=null");
    let other_expiry = PRESIGNED_EXAMPLE.replace("Expires=86400", "Expires=86401");
    let lowercase_names = PRESIGNED_EXAMPLE.replace("X-Amz-Date", "x-amz-date");
    for target in [
        &tampered_path,
        &extra_param,
        &other_expiry,
        &lowercase_names,
    ] {
        let p = parts("GET", target, &[("host", HOST)]);
        assert_eq!(
            code(check(&p, t0())),
            S3ErrorCode::SignatureDoesNotMatch,
            "{target}"
        );
    }
    let other_host = parts("GET", PRESIGNED_EXAMPLE, &[("host", "other.example.com")]);
    assert_eq!(
        code(check(&other_host, t0())),
        S3ErrorCode::SignatureDoesNotMatch
    );
    // A bad signature is reported before the expiry.
    let p = parts("GET", &tampered_path, &[("host", HOST)]);
    assert_eq!(
        code(check(&p, t0() + chrono::Duration::days(3))),
        S3ErrorCode::SignatureDoesNotMatch
    );
}

#[test]
fn presigned_parameters_are_checked() {
    let missing = PRESIGNED_EXAMPLE.replace("&X-Amz-SignedHeaders=host", "");
    let cases = [
        (
            missing,
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, \
             X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        ),
        (
            PRESIGNED_EXAMPLE.replace("=AWS4-HMAC-SHA256", "=AWS4-HMAC-SHA1"),
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256 and AWS4-ECDSA-P256-SHA256\"",
        ),
        (
            PRESIGNED_EXAMPLE.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"),
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        ),
        (
            PRESIGNED_EXAMPLE.replace("Expires=86400", "Expires=604801"),
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires \
             must be less than 604800 seconds",
        ),
        (
            PRESIGNED_EXAMPLE.replace("Expires=86400", "Expires=-1"),
            "X-Amz-Expires must be non-negative",
        ),
        (
            PRESIGNED_EXAMPLE.replace("Expires=86400", "Expires=1h"),
            "X-Amz-Expires should be a number",
        ),
        (
            PRESIGNED_EXAMPLE.replace("%2Fs3%2F", "%2Fec2%2F"),
            "Error parsing the X-Amz-Credential parameter; incorrect service \"ec2\". \
             This endpoint belongs to \"s3\".",
        ),
        (
            PRESIGNED_EXAMPLE.replace("%2Fus-east-1%2F", "%2Feu-west-1%2F"),
            "Error parsing the X-Amz-Credential parameter; the region 'eu-west-1' is wrong; \
             expecting 'us-east-1'",
        ),
    ];
    for (target, message) in cases {
        let p = parts("GET", &target, &[("host", HOST)]);
        let err = check(&p, t0()).unwrap_err();
        assert_eq!(
            err.code(),
            S3ErrorCode::AuthorizationQueryParametersError,
            "{target}"
        );
        assert_eq!(err.message(), message);
    }
    // The week itself is allowed (and then this signature does not match).
    let week = PRESIGNED_EXAMPLE.replace("Expires=86400", "Expires=604800");
    let p = parts("GET", &week, &[("host", HOST)]);
    assert_eq!(code(check(&p, t0())), S3ErrorCode::SignatureDoesNotMatch);
}

#[test]
fn unknown_access_key_is_reported() {
    let unknown = PRESIGNED_EXAMPLE.replace(KEY, "AKIAUNKNOWN");
    let err = xml(check(&parts("GET", &unknown, &[("host", HOST)]), t0()));
    assert!(err.contains("<Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message><AWSAccessKeyId>AKIAUNKNOWN</AWSAccessKeyId>"), "{err}");
    let auth = authorization("host;range;x-amz-content-sha256;x-amz-date", "00")
        .replace(KEY, "AKIAUNKNOWN");
    let p = get_object(|h| set(h, "authorization", &auth), "/test.txt");
    // The access key is looked at before the time, too.
    assert_eq!(
        code(check(&p, t0() + chrono::Duration::hours(1))),
        S3ErrorCode::InvalidAccessKeyId
    );
}

#[test]
fn malformed_authorization_headers_are_refused() {
    let good = authorization(
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
    let components = "The authorization header is malformed; the authorization header requires \
                      three components: Credential, SignedHeaders, and Signature.";
    let cases: Vec<(String, S3ErrorCode, &str)> =
        vec![
        (
            good.replace("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,", ""),
            S3ErrorCode::AuthorizationHeaderMalformed,
            components,
        ),
        ("AWS4-HMAC-SHA256".to_owned(), S3ErrorCode::AuthorizationHeaderMalformed, components),
        (
            good.replace("/us-east-1/", "/"),
            S3ErrorCode::AuthorizationHeaderMalformed,
            "The authorization header is malformed; the Credential is mal-formed; expecting \
             \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        ),
        (
            good.replace("/20130524/", "/2013052/"),
            S3ErrorCode::AuthorizationHeaderMalformed,
            "The authorization header is malformed; incorrect date format \"2013052\". This date \
             in the credential must be in the format \"yyyyMMdd\".",
        ),
        (
            good.replace("/s3/", "/ec2/"),
            S3ErrorCode::AuthorizationHeaderMalformed,
            "The authorization header is malformed; incorrect service \"ec2\". This endpoint \
             belongs to \"s3\".",
        ),
        (
            good.replace("aws4_request", "aws4_reques"),
            S3ErrorCode::AuthorizationHeaderMalformed,
            "The authorization header is malformed; incorrect terminal \"aws4_reques\". This \
             endpoint uses \"aws4_request\".",
        ),
        (
            good.replace("/20130524/", "/20130523/"),
            S3ErrorCode::AuthorizationHeaderMalformed,
            "The authorization header is malformed; Invalid credential date \"20130523\". This \
             date is not the same as X-Amz-Date: \"20130524\".",
        ),
        (
            good.replace("/us-east-1/", "/eu-west-1/"),
            S3ErrorCode::AuthorizationHeaderMalformed,
            "The authorization header is malformed; the region 'eu-west-1' is wrong; expecting \
             'us-east-1'",
        ),
        (
            format!("AWS {KEY}:frJIUN8DYpKDtOLCwo//yllqDzg="),
            S3ErrorCode::InvalidRequest,
            "The authorization mechanism you have provided is not supported. Please use \
             AWS4-HMAC-SHA256.",
        ),
        ("Bearer token".to_owned(), S3ErrorCode::InvalidArgument, "Unsupported Authorization Type"),
    ];
    for (value, code, message) in cases {
        let p = get_object(|h| set(h, "authorization", &value), "/test.txt");
        let err = check(&p, t0()).unwrap_err();
        assert_eq!((err.code(), err.message()), (code, message), "{value}");
    }
    let p = get_object(
        |h| {
            set(
                h,
                "authorization",
                &good.replace("/us-east-1/", "/eu-west-1/"),
            )
        },
        "/test.txt",
    );
    assert!(xml(check(&p, t0())).contains("<Region>us-east-1</Region>"));
}

#[test]
fn required_headers_of_header_authentication() {
    let no_sha = get_object(
        |h| h.retain(|(n, _)| *n != "x-amz-content-sha256"),
        "/test.txt",
    );
    let err = check(&no_sha, t0()).unwrap_err();
    assert_eq!(err.code(), S3ErrorCode::InvalidRequest);
    assert_eq!(
        err.message(),
        "Missing required header for this request: x-amz-content-sha256"
    );
    let bad_sha = get_object(|h| set(h, "x-amz-content-sha256", &EMPTY[1..]), "/test.txt");
    assert_eq!(code(check(&bad_sha, t0())), S3ErrorCode::InvalidArgument);
    let no_date = get_object(|h| h.retain(|(n, _)| *n != "x-amz-date"), "/test.txt");
    let err = check(&no_date, t0()).unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            S3ErrorCode::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header"
        )
    );
    let unsigned_meta = get_object(|h| set(h, "x-amz-meta-color", "red"), "/test.txt");
    let err = xml(check(&unsigned_meta, t0()));
    assert!(err.contains("<Message>There were headers present in the request which were not signed</Message><HeadersNotSigned>x-amz-meta-color</HeadersNotSigned>"), "{err}");
    let both = get_object(|_| {}, "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256");
    let err = check(&both, t0()).unwrap_err();
    assert_eq!(err.code(), S3ErrorCode::InvalidArgument);
    assert!(err.message().starts_with("Only one auth mechanism allowed"));
}

#[test]
fn anonymous_requests_are_recognised() {
    assert!(is_anonymous(&parts(
        "GET",
        "/bucket/key?versionId=1",
        &[("host", HOST)]
    )));
    assert!(is_anonymous(&parts("GET", "/", &[("authorization", "")])));
    assert!(!is_anonymous(&get_object(|_| {}, "/test.txt")));
    assert!(!is_anonymous(&parts("GET", PRESIGNED_EXAMPLE, &[])));
    assert!(!is_anonymous(&parts("GET", "/k?x-amz-signature=00", &[])));
    let sigv2 = parts("GET", "/k?AWSAccessKeyId=AKID&Signature=abc&Expires=1", &[]);
    assert!(!is_anonymous(&sigv2));
    assert_eq!(code(check(&sigv2, t0())), S3ErrorCode::InvalidRequest);
    let anonymous = parts("GET", "/k", &[]);
    assert_eq!(code(check(&anonymous, t0())), S3ErrorCode::AccessDenied);
}

// ---- Requests signed by aws-sigv4, with the settings aws-sdk-s3 uses ----

fn s3_settings(location: SignatureLocation) -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.signature_location = location;
    if location == SignatureLocation::QueryParams {
        settings.expires_in = Some(Duration::from_secs(900));
    }
    settings
}

/// Signs `method target` with aws-sigv4 and returns the request as the server receives it.
fn sdk_signed(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: SignableBody<'_>,
    location: SignatureLocation,
    time: SystemTime,
) -> http::request::Parts {
    let identity = aws_credential_types::Credentials::new(KEY, SECRET, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(time)
        .settings(s3_settings(location))
        .build()
        .unwrap()
        .into();
    let url = format!("https://{HOST}{target}");
    let signable = SignableRequest::new(method, &url, headers.iter().copied(), body).unwrap();
    let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
    let (signing_headers, params) = instructions.into_parts();
    let mut target = target.to_owned();
    for (name, value) in params {
        target.push(if target.contains('?') { '&' } else { '?' });
        target.push_str(name);
        target.push('=');
        target.push_str(&canonical::uri_encode(value.as_bytes()));
    }
    let mut all: Vec<(&str, Cow<'_, str>)> = vec![("host", HOST.into())];
    all.extend(headers.iter().map(|(n, v)| (*n, Cow::Borrowed(*v))));
    all.extend(
        signing_headers
            .iter()
            .map(|h| (h.name(), Cow::Owned(h.value().to_owned()))),
    );
    let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (*n, v.as_ref())).collect();
    parts(method, &target, &all)
}

/// aws-sdk-s3 signs the hash of a body in headers and presigns with `UNSIGNED-PAYLOAD`.
fn body_for(location: SignatureLocation) -> SignableBody<'static> {
    match location {
        SignatureLocation::Headers => SignableBody::Bytes(b"hello"),
        _ => SignableBody::UnsignedPayload,
    }
}

/// A key encoded as aws-sdk-s3 and botocore encode it: every byte but the unreserved ones and `/`.
fn sdk_path(bucket: &str, key: &str) -> String {
    const KEY_SET: &percent_encoding::AsciiSet = &canonical::UNRESERVED.remove(b'/');
    format!(
        "/{bucket}/{}",
        percent_encoding::utf8_percent_encode(key, KEY_SET)
    )
}

#[test]
fn sdk_signed_keys_verify() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let keys_to_try = [
        "plain.txt",
        "a b",
        "a+b",
        "ü/中",
        "100%",
        "!*'()",
        "a~b",
        "a=b&c",
        "a:b@c$d,e;f",
        "a//b",
        "a?b#c",
        "dir/",
        "~user/.hidden",
    ];
    for key in keys_to_try {
        for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
            let target = sdk_path("bucket", key);
            let p = sdk_signed(
                "PUT",
                &target,
                &[("x-amz-meta-note", "a  b")],
                body_for(location),
                location,
                now,
            );
            let v = check(&p, now.into()).unwrap_or_else(|e| panic!("{key} {location:?}: {e}"));
            assert_eq!(v.presigned, location == SignatureLocation::QueryParams);
        }
    }
}

#[test]
fn sdk_signed_queries_verify() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for target in [
        "/bucket?list-type=2&prefix=a%20b&delimiter=%2F",
        "/bucket?uploads",
        "/bucket/key?partNumber=1&uploadId=abc%2Bdef%3D%3D",
        "/bucket?delete",
        "/bucket?prefix=%E4%B8%AD&max-keys=10&encoding-type=url",
    ] {
        for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
            let p = sdk_signed(
                "GET",
                target,
                &[],
                SignableBody::UnsignedPayload,
                location,
                now,
            );
            let v = check(&p, now.into()).unwrap_or_else(|e| panic!("{target}: {e}"));
            if location == SignatureLocation::Headers {
                assert_eq!(v.payload, PayloadMode::Unsigned);
            }
        }
    }
}

#[test]
fn sdk_signed_requests_reject_tampering() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let target = sdk_path("bucket", "a b");
    for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
        let signed = || {
            sdk_signed(
                "PUT",
                &target,
                &[("x-amz-meta-note", "x")],
                body_for(location),
                location,
                now,
            )
        };
        let mut p = signed();
        p.headers.insert("x-amz-meta-note", "y".parse().unwrap());
        assert_eq!(
            code(check(&p, now.into())),
            S3ErrorCode::SignatureDoesNotMatch
        );
        let mut p = signed();
        p.method = http::Method::POST;
        assert_eq!(
            code(check(&p, now.into())),
            S3ErrorCode::SignatureDoesNotMatch
        );
        let mut p = signed();
        let tampered = p.uri.to_string().replace("/a%20b", "/a%20c");
        p.uri = tampered.parse().unwrap();
        assert_eq!(
            code(check(&p, now.into())),
            S3ErrorCode::SignatureDoesNotMatch
        );
        let mut p = signed();
        p.headers.insert("x-amz-meta-extra", "1".parse().unwrap());
        assert_eq!(code(check(&p, now.into())), S3ErrorCode::AccessDenied);
        // Wrong region on the server side.
        let p = signed();
        let err = verify(&p, &keys(), "eu-west-1", "s3", now.into()).unwrap_err();
        let expected = match location {
            SignatureLocation::Headers => S3ErrorCode::AuthorizationHeaderMalformed,
            _ => S3ErrorCode::AuthorizationQueryParametersError,
        };
        assert_eq!(err.code(), expected);
    }
    // Expired presigned URL (900 s) and skewed header signature.
    let p = sdk_signed(
        "GET",
        &target,
        &[],
        SignableBody::UnsignedPayload,
        SignatureLocation::QueryParams,
        now,
    );
    let later: DateTime<Utc> = (now + Duration::from_secs(901)).into();
    assert_eq!(
        check(&p, later).unwrap_err().message(),
        "Request has expired"
    );
    let p = sdk_signed(
        "GET",
        &target,
        &[],
        SignableBody::UnsignedPayload,
        SignatureLocation::Headers,
        now,
    );
    assert_eq!(code(check(&p, later)), S3ErrorCode::RequestTimeTooSkewed);
}

#[test]
fn sdk_streaming_modes_are_returned() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let target = sdk_path("bucket", "big");
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "5"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
    ];
    let p = sdk_signed(
        "PUT",
        &target,
        &headers,
        SignableBody::StreamingUnsignedPayloadTrailer,
        SignatureLocation::Headers,
        now,
    );
    assert_eq!(
        check(&p, now.into()).unwrap().payload,
        PayloadMode::StreamingUnsignedTrailer
    );
    let p = sdk_signed(
        "PUT",
        &target,
        &headers,
        SignableBody::StreamingSignedPayloadTrailer,
        SignatureLocation::Headers,
        now,
    );
    let v = check(&p, now.into()).unwrap();
    let PayloadMode::StreamingSigned {
        seed_signature,
        trailer,
        ..
    } = v.payload
    else {
        panic!("{:?}", v.payload);
    };
    assert!(trailer);
    let auth = p.headers["authorization"].to_str().unwrap();
    assert!(auth.ends_with(&format!("Signature={seed_signature}")));
}

#[test]
fn payload_mode_debug_hides_the_key() {
    let mode = PayloadMode::StreamingSigned {
        signing_key: Zeroizing::new([7u8; 32]),
        scope: "s".into(),
        amz_date: "d".into(),
        seed_signature: "x".into(),
        trailer: false,
    };
    let shown = format!("{mode:?}");
    assert!(
        shown.contains("<redacted>") && !shown.contains("[7"),
        "{shown}"
    );
}

#[test]
fn json_api_requests_are_verified_with_their_body() {
    // aws-sdk-kms signs the body's hash without sending x-amz-content-sha256.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let body = br#"{"KeyId":"alias/coffer"}"#;
    let identity = aws_credential_types::Credentials::new(KEY, SECRET, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("kms")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "TrentService.DescribeKey"),
    ];
    let url = format!("https://{HOST}/");
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("host", HOST);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut request = request.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut request);
    let p = request.into_parts().0;
    assert!(!p.headers.contains_key("x-amz-content-sha256"));

    let v = verify_with_body(&p, body, &keys(), "us-east-1", "kms", now.into()).unwrap();
    assert_eq!(v.service, "kms");
    let other = br#"{"KeyId":"alias/other"}"#;
    let err = verify_with_body(&p, other, &keys(), "us-east-1", "kms", now.into()).unwrap_err();
    assert_eq!(err.code(), S3ErrorCode::SignatureDoesNotMatch);
    // Without the body only an empty one can match.
    assert_eq!(
        code(verify(&p, &keys(), "us-east-1", "kms", now.into())),
        S3ErrorCode::SignatureDoesNotMatch
    );
    // The credential names kms, which an S3 endpoint refuses.
    let err = verify_with_body(&p, body, &keys(), "us-east-1", "s3", now.into()).unwrap_err();
    assert_eq!(err.code(), S3ErrorCode::AuthorizationHeaderMalformed);
}
