//! AWS SigV4 checked against AWS's published test suite (`aws-sig-v4-test-suite`, 2015-08-30,
//! credentials `AKIDEXAMPLE`, region `us-east-1`, service `service`) and the signing-key and
//! S3 examples of the AWS documentation. Expected values are the suite's, not our output.

use sha2::{Digest, Sha256};
use time::macros::datetime;
use url::Url;

use super::*;

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20150830T123600Z";
const SCOPE: Scope<'static> = Scope {
    region: "us-east-1",
    service: "service",
};

/// The suite's session token (`post-sts-token`), a macro so `concat!` can use it.
macro_rules! token {
    () => {
        "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
    };
}

fn now() -> OffsetDateTime {
    datetime!(2015-08-30 12:36:00 UTC)
}

fn credentials(token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        session_token: token.map(str::to_owned),
    }
}

/// One case of the suite. `path` and `query` are the suite's request line; `headers` are its
/// headers other than `Host` and `X-Amz-Date` (and the token), which the signer adds.
struct Vector {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    token: bool,
    /// Whether a `url::Url` carries the request line as the suite means it. Not for a literal
    /// space or non-ASCII in the path: `Url` percent-encodes those, and the non-S3 rule then
    /// encodes the `%` again (see `url_paths_are_double_encoded_except_for_s3`).
    via_url: bool,
    creq: &'static str,
    sts: &'static str,
    authz: &'static str,
}

const fn get(name: &'static str, path: &'static str, query: &'static str) -> Vector {
    Vector {
        name,
        method: "GET",
        path,
        query,
        headers: &[],
        body: "",
        token: false,
        via_url: true,
        creq: "",
        sts: "",
        authz: "",
    }
}

const fn post(name: &'static str, query: &'static str) -> Vector {
    Vector {
        method: "POST",
        ..get(name, "/", query)
    }
}

const VECTORS: &[Vector] = &[
    Vector {
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ..get("get-vanilla", "/", "")
    },
    // The suite's get-vanilla-query request has no query: it equals get-vanilla.
    Vector {
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ..get("get-vanilla-query", "/", "")
    },
    Vector {
        creq: "GET\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
        ..get("get-vanilla-empty-query-key", "/", "Param1=value1")
    },
    Vector {
        creq: "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        ..get(
            "get-vanilla-query-order-key",
            "/",
            "Param1=value2&Param1=Value1",
        )
    },
    Vector {
        creq: "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ..get(
            "get-vanilla-query-order-key-case",
            "/",
            "Param2=value2&Param1=value1",
        )
    },
    Vector {
        creq: "GET\n/\nParam1=value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nc968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
        ..get(
            "get-vanilla-query-order-value",
            "/",
            "Param1=value2&Param1=value1",
        )
    },
    Vector {
        creq: "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nc30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        ..get(
            "get-vanilla-query-unreserved",
            "/",
            "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        )
    },
    Vector {
        creq: "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\neb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        ..get("get-vanilla-utf8-query", "/", "\u{1234}=bar")
    },
    Vector {
        creq: "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        ..get(
            "get-unreserved",
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "",
        )
    },
    Vector {
        via_url: false,
        creq: "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        ..get("get-utf8", "/\u{1234}", "")
    },
    Vector {
        via_url: false,
        creq: "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        ..get("get-space", "/example space/", "")
    },
    Vector {
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ..get("get-slash", "//", "")
    },
    Vector {
        creq: "GET\n/example/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\ncb96b4ac96d501f7c5c15bc6d67b3035061cfced4af6585ad927f7e6c985c015",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
        ..get("get-slashes", "//example//", "")
    },
    Vector {
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ..get("get-slash-dot-slash", "/./", "")
    },
    Vector {
        creq: "GET\n/example\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n214d50c111a8edc4819da6a636336472c916b5240f51e9a51b5c3305180cf702",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
        ..get("get-slash-pointless-dot", "/./example", "")
    },
    Vector {
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ..get("get-relative", "/example/..", "")
    },
    Vector {
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ..get("get-relative-relative", "/example1/example2/../..", "")
    },
    Vector {
        headers: &[
            ("My-Header1", "value2"),
            ("My-Header1", "value2"),
            ("My-Header1", "value1"),
        ],
        creq: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\ndc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        ..get("get-header-key-duplicate", "/", "")
    },
    Vector {
        headers: &[
            ("My-Header1", "value4"),
            ("My-Header1", "value1"),
            ("My-Header1", "value3"),
            ("My-Header1", "value2"),
        ],
        creq: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        ..get("get-header-value-order", "/", "")
    },
    Vector {
        // As on the suite's request lines: a blank after the colon, and inner runs of spaces.
        headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
        creq: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\na726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        ..get("get-header-value-trim", "/", "")
    },
    Vector {
        creq: "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ..post("post-vanilla", "")
    },
    Vector {
        creq: "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        ..post("post-vanilla-query", "Param1=value1")
    },
    Vector {
        headers: &[("My-Header1", "value1")],
        creq: "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
        ..post("post-header-key-sort", "")
    },
    Vector {
        headers: &[("My-Header1", "VALUE1")],
        creq: "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nd51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
        ..post("post-header-value-case", "")
    },
    Vector {
        headers: &[("Content-Type", "application/x-www-form-urlencoded")],
        body: "Param1=value1",
        creq: "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        ..post("post-x-www-form-urlencoded", "")
    },
    Vector {
        headers: &[(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf8",
        )],
        body: "Param1=value1",
        creq: "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n2e1cf7ed91881a30569e46552437e4156c823447bf1781b921b5d486c568dd1c",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
        ..post("post-x-www-form-urlencoded-parameters", "")
    },
    // post-sts-token/post-sts-header-before: the token is signed, as this signer always does.
    Vector {
        token: true,
        creq: concat!(
            "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:",
            token!(),
            "\n\nhost;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        sts: "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nc237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
        authz: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        ..post("post-sts-header-before", "")
    },
];

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn suite_canonical_request_string_to_sign_and_signature() {
    let key = signing_key(SECRET, "20150830", SCOPE);
    for v in VECTORS {
        let mut headers = owned(v.headers);
        headers.push(("Host".into(), "example.amazonaws.com".into()));
        headers.push(("X-Amz-Date".into(), AMZ_DATE.into()));
        if v.token {
            headers.push(("X-Amz-Security-Token".into(), token!().into()));
        }
        let payload_hash = hex::encode(Sha256::digest(v.body.as_bytes()));
        let creq = canonical_request(
            v.method,
            v.path,
            v.query,
            &headers,
            &payload_hash,
            "service",
        )
        .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(creq.text, v.creq, "{}: canonical request", v.name);
        let sts = string_to_sign(AMZ_DATE, SCOPE, &creq.text);
        assert_eq!(sts, v.sts, "{}: string to sign", v.name);
        let expected_signature = v.authz.rsplit("Signature=").next().unwrap_or_default();
        assert_eq!(signature(&key, &sts), expected_signature, "{}", v.name);
    }
}

#[test]
fn suite_authorization_through_sign() {
    for v in VECTORS.iter().filter(|v| v.via_url) {
        let mut url = format!("https://example.amazonaws.com{}", v.path);
        if !v.query.is_empty() {
            url = format!("{url}?{}", v.query);
        }
        let url = Url::parse(&url).expect("suite URL");
        let headers = owned(v.headers);
        let request = RequestParts {
            method: v.method,
            url: &url,
            headers: &headers,
            body: v.body.as_bytes(),
        };
        let token = v.token.then_some(token!());
        let added = sign(&request, &credentials(token), SCOPE, now())
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let mut expected = vec![
            ("Authorization".to_owned(), v.authz.to_owned()),
            ("X-Amz-Date".to_owned(), AMZ_DATE.to_owned()),
        ];
        if let Some(token) = token {
            expected.push(("X-Amz-Security-Token".into(), token.into()));
        }
        assert_eq!(added, expected, "{}", v.name);
    }
}

#[test]
fn signing_key_matches_the_aws_documentation_example() {
    let scope = Scope {
        region: "us-east-1",
        service: "iam",
    };
    assert_eq!(
        hex::encode(signing_key(SECRET, "20120215", scope)),
        "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    );
}

/// Amazon S3 API Reference, "Signature Calculations for the Authorization Header": the
/// GET Object example (with a Range header).
#[test]
fn s3_get_object_example_from_the_aws_documentation() {
    let url = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").expect("url");
    let headers = owned(&[("Range", "bytes=0-9")]);
    let request = RequestParts {
        method: "GET",
        url: &url,
        headers: &headers,
        body: b"",
    };
    let credentials = Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    };
    let scope = Scope {
        region: "us-east-1",
        service: "s3",
    };
    let added = sign(
        &request,
        &credentials,
        scope,
        datetime!(2013-05-24 0:00 UTC),
    )
    .expect("signs");
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(
        added,
        vec![
            (
                "Authorization".to_owned(),
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41".to_owned()
            ),
            ("X-Amz-Date".to_owned(), "20130524T000000Z".to_owned()),
            ("X-Amz-Content-Sha256".to_owned(), empty.to_owned()),
        ]
    );
}

#[test]
fn url_paths_are_double_encoded_except_for_s3() {
    let url = Url::parse("https://example.amazonaws.com/example space/\u{1234}").expect("url");
    assert_eq!(url.path(), "/example%20space/%E1%88%B4");
    assert_eq!(
        canonical_uri(url.path(), "execute-api"),
        "/example%2520space/%25E1%2588%25B4"
    );
    assert_eq!(
        canonical_uri(url.path(), "s3"),
        "/example%20space/%E1%88%B4"
    );
}

#[test]
fn s3_paths_are_not_normalized() {
    assert_eq!(canonical_uri("/a//b/./c/../d/", "s3"), "/a//b/./c/../d/");
    assert_eq!(canonical_uri("/a//b/./c/../d/", "service"), "/a/b/d/");
    assert_eq!(canonical_uri("/k=v:1", "s3"), "/k%3Dv%3A1");
    assert_eq!(canonical_uri("", "service"), "/");
    assert_eq!(canonical_uri("/a/b/..", "service"), "/a/");
}

#[test]
fn query_is_decoded_then_encoded_and_sorted() {
    assert_eq!(
        canonical_query("b=2&a=1&&a&c+d=e%2Bf&x=%7e"),
        "a=&a=1&b=2&c%20d=e%2Bf&x=~"
    );
    assert_eq!(canonical_query(""), "");
}

#[test]
fn host_keeps_a_non_default_port() {
    let host = |u: &str| host_of(&Url::parse(u).expect("url")).expect("host");
    assert_eq!(
        host("https://example.amazonaws.com:443/"),
        "example.amazonaws.com"
    );
    assert_eq!(host("http://localhost:9000/"), "localhost:9000");
    assert_eq!(host("http://[::1]:8080/"), "[::1]:8080");
}

#[test]
fn a_given_host_header_is_signed_instead_of_the_url_host() {
    let url = Url::parse("https://127.0.0.1/").expect("url");
    let headers = owned(&[("Host", "example.amazonaws.com")]);
    let request = RequestParts {
        method: "GET",
        url: &url,
        headers: &headers,
        body: b"",
    };
    let added = sign(&request, &credentials(None), SCOPE, now()).expect("signs");
    assert_eq!(added[0].1, VECTORS[0].authz);
}

#[test]
fn the_signing_time_is_taken_in_utc() {
    assert_eq!(
        amz_date(datetime!(2015-08-30 14:36:00 +2)).as_deref(),
        Ok(AMZ_DATE)
    );
    assert_eq!(
        amz_date(datetime!(0999-01-02 03:04:05 UTC)).as_deref(),
        Ok("09990102T030405Z")
    );
    assert_eq!(
        amz_date(datetime!(-0001-12-31 0:00 UTC)),
        Err(SigV4Error::DateOutOfRange)
    );
}

#[test]
fn debug_hides_the_secret_and_the_token() {
    let shown = format!("{:?}", credentials(Some("the-session-token")));
    assert!(shown.contains(AKID), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("the-session-token"), "{shown}");
}

#[test]
fn bad_input_is_refused() {
    let url = Url::parse("https://example.amazonaws.com/").expect("url");
    let attempt = |credentials: Credentials, scope: Scope<'_>, headers: &[(&str, &str)]| {
        let headers = owned(headers);
        let request = RequestParts {
            method: "GET",
            url: &url,
            headers: &headers,
            body: b"",
        };
        sign(&request, &credentials, scope, now()).map(|_| ())
    };
    let with = |akid: &str, secret: &str, token: Option<&str>| Credentials {
        access_key_id: akid.into(),
        secret_access_key: secret.into(),
        session_token: token.map(str::to_owned),
    };
    let scope = |region, service| Scope { region, service };
    let ok = credentials(None);

    use SigV4Error as E;
    assert_eq!(
        attempt(with("", SECRET, None), SCOPE, &[]),
        Err(E::EmptyAccessKeyId)
    );
    assert_eq!(
        attempt(with("A\nB", SECRET, None), SCOPE, &[]),
        Err(E::InvalidAccessKeyId)
    );
    assert_eq!(
        attempt(with(AKID, "", None), SCOPE, &[]),
        Err(E::EmptySecretAccessKey)
    );
    assert_eq!(
        attempt(with(AKID, SECRET, Some("")), SCOPE, &[]),
        Err(E::EmptySessionToken)
    );
    assert_eq!(
        attempt(with(AKID, SECRET, Some("t\r\nX: y")), SCOPE, &[]),
        Err(E::HeaderValueLineBreak("x-amz-security-token".into()))
    );
    for region in ["", "US-EAST-1", "us east 1", "us/east"] {
        assert_eq!(
            attempt(ok.clone(), scope(region, "service"), &[]),
            Err(E::InvalidRegion(region.into()))
        );
    }
    for service in ["", "Service", "execute api", "s3\n"] {
        assert_eq!(
            attempt(ok.clone(), scope("us-east-1", service), &[]),
            Err(E::InvalidService(service.into()))
        );
    }
    assert_eq!(
        attempt(ok.clone(), SCOPE, &[("X-Note", "a\r\nInjected: b")]),
        Err(E::HeaderValueLineBreak("x-note".into()))
    );
    assert_eq!(
        attempt(ok.clone(), SCOPE, &[("X Note", "a")]),
        Err(E::InvalidHeaderName("X Note".into()))
    );
    assert_eq!(
        attempt(ok.clone(), SCOPE, &[("", "a")]),
        Err(E::InvalidHeaderName(String::new()))
    );
    for name in [
        "Authorization",
        "X-Amz-Date",
        "x-amz-security-token",
        "X-Amz-Content-Sha256",
    ] {
        assert_eq!(
            attempt(ok.clone(), SCOPE, &[(name, "x")]),
            Err(E::ReservedHeader(name.to_ascii_lowercase()))
        );
    }
}

#[test]
fn errors_do_not_show_header_values() {
    let error = SigV4Error::HeaderValueLineBreak("x-api-key".into());
    assert_eq!(
        error.to_string(),
        "the value of header x-api-key contains a line break"
    );
}
