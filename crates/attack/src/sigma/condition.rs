//! Sigma conditions: `selection and not 1 of filter_*`, `all of them`, parentheses.
//!
//! Parsed into an [`Expr`] over the indexes of the rule's search identifiers. `not` binds
//! tightest, then `and`, then `or`. `1 of PATTERN` and `all of PATTERN` expand to the searches
//! whose names match (`*` wildcards; `them` means every search not starting with `_`). Sigma
//! aggregations (`| count() by …`) are refused: they need state across events.

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Search(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    OneOf,
    AllOf,
    Word(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    if text.contains('|') {
        return Err("aggregations in conditions (`| count() …`) need correlation rules".into());
    }
    let spaced = text.replace('(', " ( ").replace(')', " ) ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let lower = w.to_ascii_lowercase();
        let next_is_of = words.get(i + 1).is_some_and(|n| n.eq_ignore_ascii_case("of"));
        let token = match lower.as_str() {
            "(" => Token::Open,
            ")" => Token::Close,
            "and" => Token::And,
            "or" => Token::Or,
            "not" => Token::Not,
            "1" | "any" if next_is_of => {
                i += 1;
                Token::OneOf
            }
            "all" if next_is_of => {
                i += 1;
                Token::AllOf
            }
            _ => Token::Word(w.to_owned()),
        };
        out.push(token);
        i += 1;
    }
    Ok(out)
}

/// Parses `text` against the search identifiers `names` (in rule order).
pub(crate) fn parse(text: &str, names: &[String]) -> Result<Expr, String> {
    let tokens = tokenize(text)?;
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        names,
    };
    let expr = p.or()?;
    if p.pos != tokens.len() {
        return Err(format!("unexpected `{}` in condition", p.describe()));
    }
    Ok(expr)
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    names: &'a [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn describe(&self) -> String {
        match self.peek() {
            Some(Token::Word(w)) => w.clone(),
            Some(t) => format!("{t:?}").to_ascii_lowercase(),
            None => "end".into(),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, String> {
        let token = self.peek().cloned();
        self.pos += 1;
        match token {
            Some(Token::Not) => Ok(Expr::Not(Box::new(self.unary()?))),
            Some(Token::Open) => {
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err("unbalanced parentheses in condition".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::OneOf) => Ok(Expr::Or(self.quantified()?)),
            Some(Token::AllOf) => Ok(Expr::And(self.quantified()?)),
            Some(Token::Word(name)) => self
                .names
                .iter()
                .position(|n| *n == name)
                .map(Expr::Search)
                .ok_or_else(|| format!("condition names `{name}`, which the detection does not define")),
            Some(other) => Err(format!("unexpected `{other:?}` in condition").to_ascii_lowercase()),
            None => Err("condition ends too early".into()),
        }
    }

    fn quantified(&mut self) -> Result<Vec<Expr>, String> {
        let Some(Token::Word(pattern)) = self.peek().cloned() else {
            return Err("`1 of`/`all of` wants a search name pattern or `them`".into());
        };
        self.pos += 1;
        let found: Vec<Expr> = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                if pattern == "them" {
                    !n.starts_with('_')
                } else {
                    name_matches(&pattern, n)
                }
            })
            .map(|(i, _)| Expr::Search(i))
            .collect();
        if found.is_empty() {
            return Err(format!("`{pattern}` matches no search of the detection"));
        }
        Ok(found)
    }
}

/// `*` wildcard match of a search name.
fn name_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["selection", "filter_main", "filter_optional", "_hidden"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn precedence_and_quantifiers() {
        let e = parse("selection and not 1 of filter_*", &names()).expect("parses");
        assert_eq!(
            e,
            Expr::And(vec![
                Expr::Search(0),
                Expr::Not(Box::new(Expr::Or(vec![Expr::Search(1), Expr::Search(2)])))
            ])
        );
        let e = parse("all of them", &names()).expect("parses");
        assert_eq!(e, Expr::And(vec![Expr::Search(0), Expr::Search(1), Expr::Search(2)]));
        let e = parse("(selection or filter_main) and _hidden", &names()).expect("parses");
        assert!(matches!(e, Expr::And(_)));
    }

    #[test]
    fn bad_conditions_say_why() {
        assert!(
            parse("selection and missing", &names())
                .unwrap_err()
                .contains("missing")
        );
        assert!(
            parse("selection | count() > 5", &names())
                .unwrap_err()
                .contains("aggregation")
        );
        assert!(parse("(selection", &names()).unwrap_err().contains("parenthes"));
        assert!(parse("1 of nothing_*", &names()).unwrap_err().contains("nothing_*"));
    }
}
