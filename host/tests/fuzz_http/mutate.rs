//! Mutated request streams: a seed from the vector corpus (or a few made
//! here), changed one to four times by byte, line and number mutations and
//! by splicing seeds together (pipelining). Deterministic for a seed.

/// xorshift64*: small, fast, and reproducible from the printed seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces that often break parsers.
const INTERESTING: [&[u8]; 28] = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\0",
    b" ",
    b"\t",
    b":",
    b";",
    b"\"",
    b"#",
    b"%",
    b"%00",
    b"%zz",
    b"0",
    b"f",
    b",",
    b"\x80",
    b"\xff",
    b"chunked",
    b"\r\n\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Host: a\r\n",
    b"Connection: close\r\n",
    b"Expect: 100-continue\r\n",
    b"0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
];

/// Numbers worth trying where a number was.
const NUMBERS: [&[u8]; 10] = [
    b"0",
    b"1",
    b"5",
    b"00000000000000000005",
    b"ffffffffffffffff",
    b"10000000000000000",
    b"18446744073709551616",
    b"-1",
    b"+5",
    b"99999",
];

/// Valid requests the corpus has few of: bodies both ways, pipelined.
pub fn extra_seeds() -> Vec<Vec<u8>> {
    [
        &b"GET /a?b=c HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PUT /%41%20b HTTP/1.1\r\nHost: [::1]:80\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
        b"GET http://a.example/x HTTP/1.1\r\nHost: b\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.0\r\n\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

/// One mutated input.
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = input.len().max(1);
        match rng.below(10) {
            0 => {
                let at = rng.below(len).min(input.len().saturating_sub(1));
                if let Some(byte) = input.get_mut(at) {
                    *byte = rng.next() as u8;
                }
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(input.len() + 1);
                input.splice(at..at, piece.iter().copied());
            }
            2 => {
                let at = rng.below(input.len() + 1);
                let end = (at + 1 + rng.below(16)).min(input.len());
                input.drain(at..end.max(at));
            }
            3 | 4 => {
                let mut lines: Vec<Vec<u8>> = input.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                if !lines.is_empty() {
                    let a = rng.below(lines.len());
                    let b = rng.below(lines.len());
                    if rng.below(2) == 0 {
                        let copy = lines[a].clone();
                        lines.insert(b, copy);
                    } else {
                        lines.swap(a, b);
                    }
                }
                input = lines.concat();
            }
            5 => input.extend_from_slice(&seeds[rng.below(seeds.len())]),
            6 => input.truncate(rng.below(len)),
            7 => {
                let digits: Vec<usize> = (0..input.len()).filter(|i| input[*i].is_ascii_hexdigit()).collect();
                if !digits.is_empty() {
                    let start = digits[rng.below(digits.len())];
                    let end = (start..input.len())
                        .find(|i| !input[*i].is_ascii_hexdigit())
                        .unwrap_or(input.len());
                    let number = NUMBERS[rng.below(NUMBERS.len())];
                    input.splice(start..end, number.iter().copied());
                }
            }
            8 => {
                let crlfs: Vec<usize> = input
                    .windows(2)
                    .enumerate()
                    .filter(|(_, w)| w == b"\r\n")
                    .map(|(i, _)| i)
                    .collect();
                if !crlfs.is_empty() {
                    input.remove(crlfs[rng.below(crlfs.len())]);
                }
            }
            _ => {
                let at = rng.below(len).min(input.len().saturating_sub(1));
                if let Some(byte) = input.get_mut(at) {
                    if byte.is_ascii_alphabetic() {
                        *byte ^= 0x20;
                    }
                }
            }
        }
    }
    input.truncate(64 << 10);
    defuse(input)
}

/// Echo's special paths are renamed: slow or huge ones (`/sleep/`,
/// `/big/`) would turn the fuzzer into a load test, and the others answer
/// something other than echo's JSON report.
fn defuse(mut input: Vec<u8>) -> Vec<u8> {
    for path in [
        &b"/sleep"[..],
        b"/big",
        b"/stream",
        b"/mixed",
        b"/write",
        b"/status",
        b"/panic",
        b"/error",
    ] {
        while let Some(at) = input.windows(path.len()).position(|w| w.eq_ignore_ascii_case(path)) {
            input[at + 1] = b'z';
        }
    }
    input
}
