//! The audit-log, time, mapping and expectations parsers on random and mutated input:
//! errors, never a panic. (analysis/fuzz runs the same entry point under libFuzzer.)

use analysis::analyze::fuzz_parsers;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    r#"{"@timestamp":"2026-11-28T04:00:00.5Z","event":{"action":"order-file-deleted","category":["file"]},"file":{"path":"/srv/x/../o/1.json"},"process":{"pid":42}}"#,
    r#"{"@timestamp":1795838400500,"event.action":"connection","event.category":"network","network.direction":"outbound","destination":{"ip":"::ffff:127.0.0.1","port":8081},"service":{"target":{"name":"orders"}}}"#,
    r#"{"time":1795838400500,"class_uid":1001,"activity_id":5,"file":{"path":"/a"},"file_result":{"path":"/b"},"actor":{"process":{"pid":7}}}"#,
    r#"{"time":"2026-11-28T04:00:00Z","class_uid":4001,"activity_id":1,"connection_info":{"direction_id":1},"src_endpoint":{"ip":"10.0.0.1","port":5000,"svc_name":"gw"}}"#,
    r#"{"t":"1795838400.123456789","a":{"b":"c"},"x":{"addr":"[::1]:9000","port":"70000"},"h":"localhost","s":"db","l":1,"pid":"12"}"#,
    r#"{"t":1e300,"a":{"b":"r"},"p":"rel/../../x","o":"/old"}"#,
    "[time]\nfield='t'\nformat='epoch_ms'\n[action]\nfield='a'\n[action.classes]\n'file.read'=['r']\n",
    "[[rule]]\nservice='o'\nclasses=['file.write','network.connect']\npaths=['/srv/**']\npeer_port=80\n[ignore]\npaths=['/x']\n",
    r#"t=1795838400.5 a.b=w p="/srv/o/\"1\".json" pid=9 flag x.addr=[::1]:80 msg="a\\b""#,
    "2026-02-29T23:59:60.999999999999+23:59",
    "1.5s",
];

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let alphabet: &[u8] = b"{}[]\":,.-+eE0123456789 \n\\/@aZ\xff\x00tT:=\t";
    for i in 0..20_000 {
        let mut b: Vec<u8> = SEEDS[i % SEEDS.len()].as_bytes().to_vec();
        for _ in 0..=rng.below(8) {
            if b.is_empty() {
                b.push(b'{');
            }
            let at = rng.below(b.len());
            match rng.below(5) {
                0 => b[at] = alphabet[rng.below(alphabet.len())],
                1 => {
                    b.insert(at, alphabet[rng.below(alphabet.len())]);
                }
                2 => {
                    b.remove(at);
                }
                3 => {
                    let end = (at + rng.below(16)).min(b.len());
                    let chunk: Vec<u8> = b[at..end].to_vec();
                    b.splice(at..at, chunk);
                }
                _ => b.truncate(at),
            }
        }
        fuzz_parsers(&b);
    }
    for len in 0..64 {
        let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        fuzz_parsers(&b);
    }
}
