//! The predicate language of `roomsim shrink --until`: a small expression over summary.json.
//!
//! ```text
//! expr    := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" path | "!" "(" expr ")" | "(" expr ")" | path ( op literal )?
//! path    := segment ( "." segment )*      segment: [A-Za-z0-9_-]+ or "*"
//! op      := ">" | ">=" | "<" | "<=" | "==" | "!="
//! literal := number | true | false | null | "string" | 'string'
//! ```
//!
//! A path names a set of values: `*` matches every key of an object (every element of an
//! array) at its level. A comparison holds when *some* value of the set satisfies it; a bare
//! path holds when some value is truthy (true, a non-zero number, a non-empty string, array or
//! object); `!path` holds when some value is falsy (so `!rooms.*.agreed_at_end` means "some room
//! did not agree"); a path that names nothing makes all three false. `!( … )` negates.
//! Numbers compare as numbers, strings by `==`/`!=` and lexicographic order, booleans and null
//! by `==`/`!=`; values of different types never compare (the comparison is false).

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Num(f64),
    Bool(bool),
    Str(String),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Cmp(Vec<Seg>, Op, Lit),
    Truthy(Vec<Seg>),
    Falsy(Vec<Seg>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// A parse error: where (1-based column in the predicate) and what was expected there.
#[derive(Debug, Clone, PartialEq)]
pub struct PredicateError {
    pub input: String,
    pub column: usize,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for PredicateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "predicate, column {}: expected {}, found {}", self.column, self.expected, self.found)?;
        writeln!(f, "  {}", self.input)?;
        write!(f, "  {}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl<'a> Parser<'a> {
    fn skip_ws(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
    }

    fn found(&self) -> String {
        match self.chars.get(self.pos) {
            None => "the end of the predicate".to_string(),
            Some(_) => {
                let rest: String = self.chars[self.pos..].iter().take(12).collect();
                format!("`{rest}`")
            }
        }
    }

    fn err<T>(&self, expected: &str) -> Result<T, PredicateError> {
        Err(PredicateError {
            input: self.input.to_string(),
            column: self.pos + 1,
            expected: expected.to_string(),
            found: self.found(),
        })
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        let n = s.chars().count();
        if self.chars.len() >= self.pos + n && self.chars[self.pos..self.pos + n].iter().copied().eq(s.chars()) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Expr, PredicateError> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, PredicateError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, PredicateError> {
        self.skip_ws();
        if self.chars.get(self.pos) == Some(&'!') && self.chars.get(self.pos + 1) != Some(&'=') {
            self.pos += 1;
            self.skip_ws();
            if self.eat("(") {
                let e = self.expr()?;
                if !self.eat(")") {
                    return self.err("`)` or an operator (`&&`, `||`)");
                }
                return Ok(Expr::Not(Box::new(e)));
            }
            let path = self.path()?;
            return Ok(Expr::Falsy(path));
        }
        if self.eat("(") {
            let e = self.expr()?;
            if !self.eat(")") {
                return self.err("`)` or an operator (`&&`, `||`)");
            }
            return Ok(e);
        }
        let path = self.path()?;
        self.skip_ws();
        let op = if self.eat(">=") {
            Op::Ge
        } else if self.eat("<=") {
            Op::Le
        } else if self.eat("==") {
            Op::Eq
        } else if self.eat("!=") {
            Op::Ne
        } else if self.eat(">") {
            Op::Gt
        } else if self.eat("<") {
            Op::Lt
        } else if self.eat("=") {
            self.pos -= 1;
            return self.err("a comparison (`==`, not `=`)");
        } else {
            return Ok(Expr::Truthy(path));
        };
        let lit = self.literal()?;
        Ok(Expr::Cmp(path, op, lit))
    }

    fn path(&mut self) -> Result<Vec<Seg>, PredicateError> {
        let mut segs = Vec::new();
        loop {
            self.skip_ws();
            if self.chars.get(self.pos) == Some(&'*') {
                self.pos += 1;
                segs.push(Seg::Any);
            } else {
                let start = self.pos;
                while self.pos < self.chars.len() && is_key_char(self.chars[self.pos]) {
                    self.pos += 1;
                }
                if self.pos == start {
                    return self.err(if segs.is_empty() {
                        "a path (e.g. `rooms.main.auth_disagreements`), `!` or `(`"
                    } else {
                        "a key or `*` after `.`"
                    });
                }
                segs.push(Seg::Key(self.chars[start..self.pos].iter().collect()));
            }
            // No whitespace inside a path.
            if self.chars.get(self.pos) == Some(&'.') {
                self.pos += 1;
            } else {
                return Ok(segs);
            }
        }
    }

    fn literal(&mut self) -> Result<Lit, PredicateError> {
        self.skip_ws();
        const EXPECTED: &str = "a number, true, false, null or a quoted string";
        match self.chars.get(self.pos).copied() {
            Some(q @ ('"' | '\'')) => {
                let start = self.pos;
                self.pos += 1;
                let mut s = String::new();
                while let Some(&c) = self.chars.get(self.pos) {
                    self.pos += 1;
                    if c == q {
                        return Ok(Lit::Str(s));
                    }
                    s.push(c);
                }
                self.pos = start;
                self.err("a closing quote for this string")
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = self.pos;
                self.pos += 1;
                while self.pos < self.chars.len()
                    && (self.chars[self.pos].is_ascii_alphanumeric() || matches!(self.chars[self.pos], '.' | '-' | '+'))
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => Ok(Lit::Num(n)),
                    _ => {
                        self.pos = start;
                        self.err(EXPECTED)
                    }
                }
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.chars.len() && is_key_char(self.chars[self.pos]) {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "true" => Ok(Lit::Bool(true)),
                    "false" => Ok(Lit::Bool(false)),
                    "null" => Ok(Lit::Null),
                    _ => {
                        self.pos = start;
                        self.err(EXPECTED)
                    }
                }
            }
            _ => self.err(EXPECTED),
        }
    }
}

/// Parses a predicate; errors say where and what was expected.
pub fn parse(input: &str) -> Result<Expr, PredicateError> {
    let mut p = Parser { input, chars: input.chars().collect(), pos: 0 };
    let e = p.expr()?;
    p.skip_ws();
    if p.pos < p.chars.len() {
        return p.err("`&&`, `||`, a comparison operator or the end of the predicate");
    }
    Ok(e)
}

/// Every value the path names in `v`.
pub fn resolve<'v>(v: &'v Value, path: &[Seg]) -> Vec<&'v Value> {
    let mut cur = vec![v];
    for seg in path {
        let mut next = Vec::new();
        for x in cur {
            match (seg, x) {
                (Seg::Key(k), Value::Object(m)) => next.extend(m.get(k)),
                (Seg::Key(k), Value::Array(a)) => next.extend(k.parse::<usize>().ok().and_then(|i| a.get(i))),
                (Seg::Any, Value::Object(m)) => next.extend(m.values()),
                (Seg::Any, Value::Array(a)) => next.extend(a.iter()),
                _ => {}
            }
        }
        cur = next;
    }
    cur
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn compare(v: &Value, op: Op, lit: &Lit) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (v, lit) {
        (Value::Number(n), Lit::Num(x)) => n.as_f64().and_then(|a| a.partial_cmp(x)),
        (Value::String(s), Lit::Str(x)) => Some(s.as_str().cmp(x.as_str())),
        (Value::Bool(b), Lit::Bool(x)) => {
            return match op {
                Op::Eq => b == x,
                Op::Ne => b != x,
                _ => false,
            }
        }
        (Value::Null, Lit::Null) => {
            return op == Op::Eq;
        }
        _ => None,
    };
    let Some(o) = ord else { return false };
    match op {
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
        Op::Eq => o == Ordering::Equal,
        Op::Ne => o != Ordering::Equal,
    }
}

/// Whether the predicate holds for a summary.
pub fn eval(e: &Expr, v: &Value) -> bool {
    match e {
        Expr::Cmp(p, op, lit) => resolve(v, p).into_iter().any(|x| compare(x, *op, lit)),
        Expr::Truthy(p) => resolve(v, p).into_iter().any(truthy),
        Expr::Falsy(p) => resolve(v, p).into_iter().any(|x| !truthy(x)),
        Expr::Not(e) => !eval(e, v),
        Expr::And(a, b) => eval(a, v) && eval(b, v),
        Expr::Or(a, b) => eval(a, v) || eval(b, v),
    }
}

/// The values a predicate's paths name, for error messages: `path = value, …`.
pub fn describe(e: &Expr, v: &Value) -> String {
    let mut out = Vec::new();
    collect(e, v, &mut out);
    out.join("; ")
}

fn collect(e: &Expr, v: &Value, out: &mut Vec<String>) {
    match e {
        Expr::Cmp(p, _, _) | Expr::Truthy(p) | Expr::Falsy(p) => {
            let name: Vec<String> = p
                .iter()
                .map(|s| match s {
                    Seg::Key(k) => k.clone(),
                    Seg::Any => "*".to_string(),
                })
                .collect();
            let vals: Vec<String> = resolve(v, p).into_iter().map(|x| x.to_string()).collect();
            let shown = if vals.is_empty() { "(nothing)".to_string() } else { vals.join(", ") };
            out.push(format!("{} = {}", name.join("."), shown));
        }
        Expr::Not(e) => collect(e, v, out),
        Expr::And(a, b) | Expr::Or(a, b) => {
            collect(a, v, out);
            collect(b, v, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary() -> Value {
        json!({
            "servers": 4,
            "rooms": {
                "main": {"auth_disagreements": 0, "agreed_at_end": true, "room_version": "12", "in_room": ["hs1"]},
                "side": {"auth_disagreements": 2, "agreed_at_end": false, "room_version": "11", "in_room": []}
            },
            "notes": []
        })
    }

    fn holds(p: &str) -> bool {
        eval(&parse(p).unwrap_or_else(|e| panic!("{e}")), &summary())
    }

    #[test]
    fn comparisons() {
        assert!(holds("servers == 4"));
        assert!(holds("servers >= 4"));
        assert!(!holds("servers > 4"));
        assert!(holds("servers < 4.5"));
        assert!(holds("servers <= 4"));
        assert!(holds("servers != 3"));
        assert!(holds("rooms.main.auth_disagreements == 0"));
        assert!(holds("rooms.main.room_version == \"12\""));
        assert!(holds("rooms.side.room_version == '11'"));
        assert!(holds("rooms.main.agreed_at_end == true"));
        assert!(holds("rooms.side.agreed_at_end != true"));
        assert!(!holds("rooms.main.agreed_at_end > 0"), "types never compare");
        assert!(holds("servers > -1e3"));
    }

    #[test]
    fn star_means_some_key() {
        assert!(holds("rooms.*.auth_disagreements > 0"));
        assert!(holds("rooms.*.auth_disagreements == 0"));
        assert!(!holds("rooms.*.auth_disagreements > 2"));
        assert!(holds("rooms.*.in_room.* == \"hs1\""));
        assert!(holds("rooms.main.in_room.0 == \"hs1\""));
    }

    #[test]
    fn truthiness_and_negation() {
        assert!(holds("rooms.main.agreed_at_end"));
        assert!(holds("!rooms.*.agreed_at_end"), "some room did not agree");
        assert!(!holds("!rooms.main.agreed_at_end"));
        assert!(!holds("notes"));
        assert!(holds("!notes"));
        assert!(!holds("missing.path"), "a path naming nothing is false");
        assert!(!holds("!missing.path"));
        assert!(!holds("missing > 0"));
        assert!(holds("!(missing > 0)"));
    }

    #[test]
    fn and_or_parentheses() {
        assert!(holds("servers == 4 && rooms.side.auth_disagreements > 1"));
        assert!(!holds("servers == 4 && rooms.main.auth_disagreements > 1"));
        assert!(holds("servers == 3 || rooms.main.agreed_at_end"));
        assert!(holds("servers == 3 && servers == 3 || servers == 4"), "&& binds tighter");
        assert!(!holds("servers == 3 && (servers == 3 || servers == 4)"));
        assert!(holds("!(servers == 3)"));
    }

    fn error(p: &str) -> PredicateError {
        parse(p).expect_err(p)
    }

    #[test]
    fn located_errors() {
        let e = error("rooms.main.x >");
        assert_eq!(e.column, 15);
        assert!(e.expected.contains("number"), "{e}");
        assert!(e.found.contains("end"), "{e}");
        let e = error("rooms..x > 0");
        assert_eq!(e.column, 7);
        assert!(e.expected.contains("after `.`"), "{e}");
        let e = error("servers = 4");
        assert_eq!(e.column, 9);
        assert!(e.expected.contains("=="), "{e}");
        let e = error("servers > 4 junk");
        assert_eq!(e.column, 13);
        let e = error("servers > abc");
        assert_eq!(e.column, 11);
        let e = error("(servers > 4");
        assert_eq!(e.column, 13);
        assert!(e.expected.contains(")"), "{e}");
        let e = error("x == \"open");
        assert_eq!(e.column, 6);
        let e = error("");
        assert_eq!(e.column, 1);
        let e = error("a && ");
        assert_eq!(e.column, 6);
        let shown = error("rooms.main.x >").to_string();
        assert!(shown.contains("column 15"), "{shown}");
        assert!(shown.ends_with(&format!("{}^", " ".repeat(16))), "{shown:?}");
        // Never panics on odd input.
        for p in ["!", "!!", "((", "*", "**.", "a.b.", "é > 1", "a > 1e999", "a > -", "&&", "a ||", "a !", "a >= 'x"] {
            let _ = parse(p);
        }
    }
}
