//! A parser for schedulers written as Python calls:
//! `CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=4, mode="triangular2")`.

use serde_json::{Map, Number, Value as Json};

use crate::{SchedError, SchedulerSpec};

enum Node {
    Json(Json),
    Call(SchedulerSpec),
    Calls(Vec<SchedulerSpec>),
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, expected: &'static str) -> Result<T, SchedError> {
        let rest = &self.src[self.pos..];
        let found = match rest.chars().next() {
            None => "the end of the input".to_string(),
            Some(_) => format!("`{}`", rest.chars().take(12).collect::<String>()),
        };
        Err(SchedError::Parse {
            position: self.pos,
            expected,
            found,
        })
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char, what: &'static str) -> Result<(), SchedError> {
        if self.eat(c) {
            Ok(())
        } else {
            self.err(what)
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.src[start..];
        let len = rest
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(&self.src[start..start + len])
    }

    /// A scheduler's name after its first word: `word`, or `word:name`
    /// (`transformers:cosine`).
    fn qualified(&mut self, word: &str) -> Result<String, SchedError> {
        if self.peek() != Some(':') {
            return Ok(word.to_string());
        }
        self.pos += 1;
        match self.ident() {
            Some(rest) => Ok(format!("{word}:{rest}")),
            None => self.err("a name after `:`"),
        }
    }

    /// `Name(kw=value, ...)`, after the name.
    fn call_args(&mut self, name: &str) -> Result<SchedulerSpec, SchedError> {
        let mut spec = SchedulerSpec::new(name);
        self.expect('(', "`(`")?;
        loop {
            if self.eat(')') {
                return Ok(spec);
            }
            let Some(key) = self.ident() else {
                return self.err("a keyword argument name or `)`");
            };
            self.expect('=', "`=` (tempo takes keyword arguments only)")?;
            let value = self.value()?;
            match (key, value) {
                ("schedulers", Node::Calls(children)) => spec.schedulers = Some(children),
                ("schedulers", _) => return self.err("a list of scheduler calls for `schedulers`"),
                (_, Node::Json(v)) => {
                    spec.kwargs.insert(key.to_string(), v);
                }
                (_, _) => {
                    return self.err("a value (a scheduler call is only allowed in `schedulers`)")
                }
            }
            if !self.eat(',') {
                self.expect(')', "`,` or `)`")?;
                return Ok(spec);
            }
        }
    }

    fn items(&mut self, close: char) -> Result<Node, SchedError> {
        let mut nodes = Vec::new();
        loop {
            if self.eat(close) {
                break;
            }
            nodes.push(self.value()?);
            if !self.eat(',') {
                if self.eat(close) {
                    break;
                }
                return self.err("`,` or the end of the list");
            }
        }
        if !nodes.is_empty() && nodes.iter().all(|n| matches!(n, Node::Call(_))) {
            return Ok(Node::Calls(
                nodes
                    .into_iter()
                    .filter_map(|n| if let Node::Call(c) = n { Some(c) } else { None })
                    .collect(),
            ));
        }
        let mut out = Vec::new();
        for n in nodes {
            match n {
                Node::Json(v) => out.push(v),
                _ => return self.err("values, not scheduler calls, in this list"),
            }
        }
        Ok(Node::Json(Json::Array(out)))
    }

    fn string(&mut self, quote: char) -> Result<String, SchedError> {
        let mut out = String::new();
        let mut chars = self.src[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    }),
                    None => break,
                },
                c if c == quote => {
                    self.pos += i + c.len_utf8();
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        self.pos = self.src.len();
        self.err("a closing quote")
    }

    fn number(&mut self) -> Result<Json, SchedError> {
        let start = self.pos;
        let rest = &self.src[start..];
        let mut len = 0;
        for (i, c) in rest.char_indices() {
            let sign_ok =
                (c == '+' || c == '-') && (i == 0 || matches!(rest.as_bytes()[i - 1], b'e' | b'E'));
            if c.is_ascii_digit() || c == '.' || c == '_' || c == 'e' || c == 'E' || sign_ok {
                len = i + 1;
            } else {
                break;
            }
        }
        let text: String = rest[..len].chars().filter(|&c| c != '_').collect();
        let is_float = text.contains(['.', 'e', 'E']);
        let parsed = if is_float {
            text.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Json::Number)
        } else {
            text.parse::<i64>().ok().map(|v| Json::Number(v.into()))
        };
        match parsed {
            Some(v) => {
                self.pos += len;
                Ok(v)
            }
            None => self.err("a number"),
        }
    }

    fn value(&mut self) -> Result<Node, SchedError> {
        self.skip_ws();
        match self.peek() {
            Some(q @ ('\'' | '"')) => {
                self.pos += 1;
                Ok(Node::Json(Json::String(self.string(q)?)))
            }
            Some('[') => {
                self.pos += 1;
                self.items(']')
            }
            Some('(') => {
                self.pos += 1;
                self.items(')')
            }
            Some('{') => {
                self.pos += 1;
                let mut map = Map::new();
                loop {
                    if self.eat('}') {
                        break;
                    }
                    self.skip_ws();
                    let key = match self.peek() {
                        Some(q @ ('\'' | '"')) => {
                            self.pos += 1;
                            self.string(q)?
                        }
                        _ => return self.err("a quoted dict key"),
                    };
                    self.expect(':', "`:`")?;
                    match self.value()? {
                        Node::Json(v) => {
                            map.insert(key, v);
                        }
                        _ => return self.err("a value"),
                    }
                    if !self.eat(',') {
                        self.expect('}', "`,` or `}`")?;
                        break;
                    }
                }
                Ok(Node::Json(Json::Object(map)))
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                Ok(Node::Json(self.number()?))
            }
            Some(_) => {
                let Some(word) = self.ident() else {
                    return self.err("a value");
                };
                match word {
                    "True" => Ok(Node::Json(Json::Bool(true))),
                    "False" => Ok(Node::Json(Json::Bool(false))),
                    "None" => Ok(Node::Json(Json::Null)),
                    word => {
                        let name = self.qualified(word)?;
                        Ok(Node::Call(self.call_args(&name)?))
                    }
                }
            }
            None => self.err("a value"),
        }
    }
}

/// Parses a scheduler written as a Python call into a [`SchedulerSpec`] (what
/// `tempo plot --scheduler` takes):
///
/// ```
/// use tempo_sched::parse_scheduler_call;
/// let spec = parse_scheduler_call(
///     "CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=4, mode='triangular2', cycle_momentum=False)",
/// )?;
/// assert_eq!(spec.r#type, "CyclicLR");
/// assert_eq!(spec.kwargs["step_size_up"], 4);
/// assert_eq!(spec.kwargs["mode"], "triangular2");
/// # Ok::<(), tempo_sched::SchedError>(())
/// ```
///
/// Values are numbers (an int unless it has `.` or an exponent), strings in `'` or `"`,
/// `True`/`False`/`None`, lists `[..]`, tuples `(..)` (both become lists) and dicts
/// `{'fn': 'pow', 'base': 0.9}`. SequentialLR and ChainedScheduler take their children
/// as calls: `SequentialLR(schedulers=[LinearLR(start_factor=0.1), ExponentialLR(gamma=0.9)],
/// milestones=[5])`. Arguments are keywords only; the optimizer is not written.
/// transformers' schedules are `transformers:<name>(...)`:
/// `transformers:cosine(num_warmup_steps=100, num_training_steps=1000)`.
pub fn parse_scheduler_call(s: &str) -> Result<SchedulerSpec, SchedError> {
    let mut p = Parser { src: s, pos: 0 };
    let Some(word) = p.ident() else {
        return p.err("a scheduler name");
    };
    let name = p.qualified(word)?;
    let spec = p.call_args(&name)?;
    p.skip_ws();
    if p.pos != s.len() {
        return p.err("the end of the input");
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_python_int_or_float() {
        let s = parse_scheduler_call("X(a=3, b=3.0, c=1e-3, d=-2, e=1_000, f=2.5E+2, g=.5)")
            .expect("parse");
        let k = &s.kwargs;
        assert!(k["a"].is_i64() && k["d"].is_i64() && k["e"] == 1000);
        assert!(k["b"].is_f64() && k["c"].is_f64() && k["g"].is_f64());
        assert_eq!(k["f"], 250.0);
        assert!(parse_scheduler_call("X(a=1e)").is_err());
        assert!(parse_scheduler_call("X(a=1) trailing").is_err());
        assert!(parse_scheduler_call("X(a='unclosed)").is_err());
    }
}
