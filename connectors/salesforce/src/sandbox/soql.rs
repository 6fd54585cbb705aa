//! A SOQL subset: tokenizer, recursive-descent parser and syntax tree, plus the `LIKE` matcher.
//!
//! Supported: `SELECT` of fields and relationship paths (`Account.Name`) or `COUNT()`/`COUNT(f)`,
//! `FROM` one object, `WHERE` with `AND`/`OR`/`NOT` and parentheses (mixing `AND` and `OR` without
//! parentheses is refused, as Salesforce does), `= != <> < <= > >=`, `[NOT] IN (…)`, `LIKE`,
//! `INCLUDES`/`EXCLUDES`, literals (strings with escapes, numbers, `true`/`false`/`null`, unquoted
//! dates and datetimes with 0–9 fractional digits and `Z` or `±hh:mm`), `ORDER BY` with
//! `ASC`/`DESC` and `NULLS FIRST`/`LAST`, `LIMIT` and `OFFSET` (at most 2000).
//! Not supported (answered `MALFORMED_QUERY`): sub-queries, `GROUP BY`, aggregate functions other
//! than `COUNT`, date literals such as `LAST_N_DAYS:7`, `WITH`, `FOR UPDATE`.
//!
//! This module knows no schema: field and object names are checked when a query is bound to the
//! org (`super::query`).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// The largest `OFFSET` Salesforce accepts.
pub const MAX_OFFSET: u64 = 2000;

/// What kind of error, i.e. which `errorCode` Salesforce answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoqlErrorKind {
    MalformedQuery,
    InvalidField,
    InvalidType,
    InvalidQueryFilterOperator,
    NumberOutsideValidRange,
}

impl SoqlErrorKind {
    pub fn error_code(self) -> &'static str {
        match self {
            SoqlErrorKind::MalformedQuery => "MALFORMED_QUERY",
            SoqlErrorKind::InvalidField => "INVALID_FIELD",
            SoqlErrorKind::InvalidType => "INVALID_TYPE",
            SoqlErrorKind::InvalidQueryFilterOperator => "INVALID_QUERY_FILTER_OPERATOR",
            SoqlErrorKind::NumberOutsideValidRange => "NUMBER_OUTSIDE_VALID_RANGE",
        }
    }
}

/// A query that cannot run, with the byte position it points at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.text)]
pub struct SoqlError {
    pub kind: SoqlErrorKind,
    pub text: String,
    pub position: Option<usize>,
}

impl SoqlError {
    pub fn new(kind: SoqlErrorKind, text: impl Into<String>, position: Option<usize>) -> SoqlError {
        SoqlError {
            kind,
            text: text.into(),
            position,
        }
    }

    fn malformed(text: impl Into<String>, position: usize) -> SoqlError {
        SoqlError::new(SoqlErrorKind::MalformedQuery, text, Some(position))
    }

    /// The message as Salesforce words it: the offending line, a caret, `ERROR at Row:r:Column:c`,
    /// then the reason.
    pub fn message(&self, query: &str) -> String {
        let Some(position) = self.position else {
            return self.text.clone();
        };
        let position = position.min(query.len());
        let line_start = query[..position].rfind('\n').map_or(0, |index| index + 1);
        let line_end = query[position..]
            .find('\n')
            .map_or(query.len(), |index| position + index);
        let row = query[..position].matches('\n').count() + 1;
        let column = query[line_start..position].chars().count() + 1;
        format!(
            "\n{}\n{}^\nERROR at Row:{row}:Column:{column}\n{}",
            &query[line_start..line_end],
            " ".repeat(column - 1),
            self.text
        )
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One piece of a `LIKE` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikePiece {
    Char(char),
    /// `_`
    AnyOne,
    /// `%`
    AnyMany,
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// The unescaped text, and the same text read as a `LIKE` pattern.
    String(String, Vec<LikePiece>),
    Number(f64),
    Bool(bool),
    Null,
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

impl Literal {
    /// How a type error names what was given.
    pub fn describe(&self) -> &'static str {
        match self {
            Literal::String(..) => "string",
            Literal::Number(_) => "number",
            Literal::Bool(_) => "boolean",
            Literal::Null => "null",
            Literal::Date(_) => "date",
            Literal::DateTime(_) => "dateTime",
        }
    }
}

/// A literal and where it stands in the query text.
#[derive(Debug, Clone, PartialEq)]
pub struct LiteralAt {
    pub value: Literal,
    pub position: usize,
}

/// `Name` or `Account.Owner.Email`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    pub parts: Vec<String>,
    pub position: usize,
}

impl FieldPath {
    pub fn dotted(&self) -> String {
        self.parts.join(".")
    }
}

/// The select list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// `COUNT()`: only `totalSize` is answered.
    Count,
    /// `COUNT(field)`: one aggregate row with `expr0`.
    CountField(FieldPath),
    Fields(Vec<FieldPath>),
}

/// A `WHERE` condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        field: FieldPath,
        op: CompareOp,
        value: LiteralAt,
    },
    In {
        field: FieldPath,
        values: Vec<LiteralAt>,
        negated: bool,
    },
    Like {
        field: FieldPath,
        pattern: LiteralAt,
    },
    /// `INCLUDES` (or `EXCLUDES` when `negated`) on a multi-select picklist.
    Includes {
        field: FieldPath,
        values: Vec<LiteralAt>,
        negated: bool,
    },
}

/// One `ORDER BY` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub field: FieldPath,
    pub descending: bool,
    /// Defaults: nulls first ascending, last descending.
    pub nulls_first: bool,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Select,
    pub from: String,
    pub from_position: usize,
    pub filter: Option<Condition>,
    pub order_by: Vec<OrderItem>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    String(String, Vec<LikePiece>),
    Number(f64),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Op(CompareOp),
    Comma,
    Dot,
    Open,
    Close,
    Minus,
    Plus,
    End,
}

impl Token {
    fn shown(&self, text: &str, position: usize, end: usize) -> String {
        match self {
            Token::End => "<EOF>".to_string(),
            _ => text.get(position..end).unwrap_or("").to_string(),
        }
    }
}

#[derive(Debug, Clone)]
struct Spanned {
    token: Token,
    position: usize,
    end: usize,
}

/// Splits `text` into tokens.
fn tokenize(text: &str) -> Result<Vec<Spanned>, SoqlError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let start = index;
        let token = match byte {
            b' ' | b'\t' | b'\r' | b'\n' => {
                index += 1;
                continue;
            }
            b',' => {
                index += 1;
                Token::Comma
            }
            b'.' => {
                index += 1;
                Token::Dot
            }
            b'(' => {
                index += 1;
                Token::Open
            }
            b')' => {
                index += 1;
                Token::Close
            }
            b'-' => {
                index += 1;
                Token::Minus
            }
            b'+' => {
                index += 1;
                Token::Plus
            }
            b'=' => {
                index += 1;
                Token::Op(CompareOp::Eq)
            }
            b'!' if bytes.get(index + 1) == Some(&b'=') => {
                index += 2;
                Token::Op(CompareOp::Ne)
            }
            b'<' => match bytes.get(index + 1) {
                Some(b'=') => {
                    index += 2;
                    Token::Op(CompareOp::Le)
                }
                Some(b'>') => {
                    index += 2;
                    Token::Op(CompareOp::Ne)
                }
                _ => {
                    index += 1;
                    Token::Op(CompareOp::Lt)
                }
            },
            b'>' => {
                if bytes.get(index + 1) == Some(&b'=') {
                    index += 2;
                    Token::Op(CompareOp::Ge)
                } else {
                    index += 1;
                    Token::Op(CompareOp::Gt)
                }
            }
            b'\'' => {
                let (token, end) = lex_string(text, index)?;
                index = end;
                token
            }
            b'0'..=b'9' => {
                let (token, end) = lex_number_or_date(text, index)?;
                index = end;
                token
            }
            byte if byte.is_ascii_alphabetic() || byte == b'_' => {
                while index < bytes.len()
                    && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_')
                {
                    index += 1;
                }
                Token::Word(text[start..index].to_string())
            }
            _ => {
                let shown: String = text[index..]
                    .chars()
                    .next()
                    .map(String::from)
                    .unwrap_or_default();
                return Err(SoqlError::malformed(
                    format!("unexpected token: '{shown}'"),
                    index,
                ));
            }
        };
        tokens.push(Spanned {
            token,
            position: start,
            end: index,
        });
    }
    tokens.push(Spanned {
        token: Token::End,
        position: text.len(),
        end: text.len(),
    });
    Ok(tokens)
}

/// A quoted string starting at `start` (the opening quote). Escapes: `\' \" \\ \n \r \t \b \f`
/// and, meaningful to `LIKE`, `\%` and `\_`.
fn lex_string(text: &str, start: usize) -> Result<(Token, usize), SoqlError> {
    let mut value = String::new();
    let mut pattern = Vec::new();
    let mut characters = text[start + 1..].char_indices();
    while let Some((offset, character)) = characters.next() {
        match character {
            '\'' => return Ok((Token::String(value, pattern), start + 1 + offset + 1)),
            '\\' => {
                let Some((_, escaped)) = characters.next() else {
                    break;
                };
                let literal = match escaped {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    '\'' | '"' | '\\' | '%' | '_' => escaped,
                    other => {
                        return Err(SoqlError::malformed(
                            format!(
                                "Invalid string literal '\\{other}'. Illegal character sequence '\\{other}' in string literal."
                            ),
                            start + 1 + offset,
                        ));
                    }
                };
                value.push(literal);
                pattern.push(LikePiece::Char(literal));
            }
            '%' => {
                value.push('%');
                pattern.push(LikePiece::AnyMany);
            }
            '_' => {
                value.push('_');
                pattern.push(LikePiece::AnyOne);
            }
            other => {
                value.push(other);
                pattern.push(LikePiece::Char(other));
            }
        }
    }
    Err(SoqlError::malformed("unterminated string literal", start))
}

fn digits_at(bytes: &[u8], index: usize, count: usize) -> Option<u32> {
    let slice = bytes.get(index..index + count)?;
    if !slice.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(slice).ok()?.parse().ok()
}

/// A number, or an unquoted date (`2026-05-20`) or datetime (`2026-05-20T20:49:32.000Z`).
fn lex_number_or_date(text: &str, start: usize) -> Result<(Token, usize), SoqlError> {
    let bytes = text.as_bytes();
    let mut index = start;
    while index < bytes.len() && bytes[index].is_ascii_digit() {
        index += 1;
    }
    if index - start == 4 && bytes.get(index) == Some(&b'-') {
        return lex_date(text, start);
    }
    if bytes.get(index) == Some(&b'.') && bytes.get(index + 1).is_some_and(u8::is_ascii_digit) {
        index += 1;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
    }
    if bytes
        .get(index)
        .is_some_and(|byte| byte.is_ascii_alphabetic() || *byte == b'_')
    {
        return Err(SoqlError::malformed(
            format!("unexpected token: '{}'", word_at(text, start)),
            start,
        ));
    }
    let number: f64 = text[start..index].parse().map_err(|_| {
        SoqlError::malformed(
            format!("unexpected token: '{}'", &text[start..index]),
            start,
        )
    })?;
    Ok((Token::Number(number), index))
}

fn word_at(text: &str, start: usize) -> &str {
    let end = text[start..]
        .find(|character: char| {
            !(character.is_ascii_alphanumeric() || matches!(character, '_' | '-' | ':' | '.' | '+'))
        })
        .map_or(text.len(), |offset| start + offset);
    &text[start..end]
}

fn lex_date(text: &str, start: usize) -> Result<(Token, usize), SoqlError> {
    let bytes = text.as_bytes();
    let bad = || {
        SoqlError::malformed(
            format!(
                "line 1:{start} no viable alternative at character '{}'",
                word_at(text, start)
            ),
            start,
        )
    };
    let (Some(year), Some(month), Some(day)) = (
        digits_at(bytes, start, 4),
        digits_at(bytes, start + 5, 2).filter(|_| bytes.get(start + 7) == Some(&b'-')),
        digits_at(bytes, start + 8, 2),
    ) else {
        return Err(bad());
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(bad)?;
    let mut index = start + 10;
    if bytes.get(index) != Some(&b'T') {
        if bytes
            .get(index)
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b':')
        {
            return Err(bad());
        }
        return Ok((Token::Date(date), index));
    }
    index += 1;
    let (Some(hour), Some(minute), Some(second)) = (
        digits_at(bytes, index, 2).filter(|_| bytes.get(index + 2) == Some(&b':')),
        digits_at(bytes, index + 3, 2).filter(|_| bytes.get(index + 5) == Some(&b':')),
        digits_at(bytes, index + 6, 2),
    ) else {
        return Err(bad());
    };
    index += 8;
    let mut nanos = 0u32;
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        let fraction_start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        let digits = index - fraction_start;
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        let fraction: u32 = text[fraction_start..index].parse().map_err(|_| bad())?;
        nanos = fraction * 10u32.pow(9 - digits as u32);
    }
    let offset_seconds = match bytes.get(index) {
        Some(b'Z') => {
            index += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let (Some(hours), Some(minutes)) = (
                digits_at(bytes, index + 1, 2).filter(|_| bytes.get(index + 3) == Some(&b':')),
                digits_at(bytes, index + 4, 2),
            ) else {
                return Err(bad());
            };
            let seconds = (hours * 3600 + minutes * 60) as i32;
            index += 6;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return Err(bad()),
    };
    if bytes
        .get(index)
        .is_some_and(|byte| byte.is_ascii_alphanumeric())
    {
        return Err(bad());
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos).ok_or_else(bad)?;
    let offset = FixedOffset::east_opt(offset_seconds).ok_or_else(bad)?;
    let local = NaiveDateTime::new(date, time);
    let at = local
        .and_local_timezone(offset)
        .single()
        .ok_or_else(bad)?
        .with_timezone(&Utc);
    Ok((Token::DateTime(at), index))
}

/// Parses one SOQL query.
pub fn parse(text: &str) -> Result<Query, SoqlError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        text,
        tokens,
        index: 0,
    };
    parser.query()
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Spanned>,
    index: usize,
}

const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET",
    "NULL", "TRUE", "FALSE", "GROUP", "HAVING", "INCLUDES", "EXCLUDES", "ASC", "DESC", "NULLS",
    "WITH", "FOR", "USING",
];

impl Parser<'_> {
    fn peek(&self) -> &Spanned {
        &self.tokens[self.index.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Spanned {
        let token = self.peek().clone();
        if self.index < self.tokens.len() - 1 {
            self.index += 1;
        }
        token
    }

    fn unexpected(&self) -> SoqlError {
        let token = self.peek();
        SoqlError::malformed(
            format!(
                "unexpected token: '{}'",
                token.token.shown(self.text, token.position, token.end)
            ),
            token.position,
        )
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().token, Token::Word(word) if word.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if self.at_keyword(keyword) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), SoqlError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect(&mut self, expected: &Token) -> Result<(), SoqlError> {
        if &self.peek().token == expected {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// A name that is not a reserved word.
    fn identifier(&mut self) -> Result<(String, usize), SoqlError> {
        match &self.peek().token {
            Token::Word(word)
                if !RESERVED
                    .iter()
                    .any(|reserved| reserved.eq_ignore_ascii_case(word)) =>
            {
                let word = word.clone();
                let position = self.advance().position;
                Ok((word, position))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn field_path(&mut self) -> Result<FieldPath, SoqlError> {
        let (first, position) = self.identifier()?;
        let mut parts = vec![first];
        while self.peek().token == Token::Dot {
            self.advance();
            parts.push(self.identifier()?.0);
        }
        if parts.len() > 6 {
            return Err(SoqlError::malformed(
                "SOQL statements cannot query relationships that are more than 5 levels away from the root entity object.",
                position,
            ));
        }
        Ok(FieldPath { parts, position })
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_keyword("SELECT")?;
        let select = self.select_list()?;
        self.expect_keyword("FROM")?;
        let (from, from_position) = self.identifier()?;
        let mut filter = None;
        if self.eat_keyword("WHERE") {
            filter = Some(self.condition()?);
        }
        let mut order_by = Vec::new();
        if self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            order_by.push(self.order_item()?);
            while self.peek().token == Token::Comma {
                self.advance();
                order_by.push(self.order_item()?);
            }
        }
        let mut limit = None;
        if self.eat_keyword("LIMIT") {
            limit = Some(self.whole_number()?.0);
        }
        let mut offset = None;
        if self.eat_keyword("OFFSET") {
            let (value, position) = self.whole_number()?;
            if value > MAX_OFFSET {
                return Err(SoqlError::new(
                    SoqlErrorKind::NumberOutsideValidRange,
                    format!("Maximum SOQL offset allowed is {MAX_OFFSET}"),
                    Some(position),
                ));
            }
            offset = Some(value);
        }
        if self.peek().token != Token::End {
            return Err(self.unexpected());
        }
        Ok(Query {
            select,
            from,
            from_position,
            filter,
            order_by,
            limit,
            offset,
        })
    }

    fn whole_number(&mut self) -> Result<(u64, usize), SoqlError> {
        match self.peek().token {
            Token::Number(number) if number.fract() == 0.0 && (0.0..1e15).contains(&number) => {
                let position = self.advance().position;
                Ok((number as u64, position))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn select_list(&mut self) -> Result<Select, SoqlError> {
        if self.at_keyword("COUNT")
            && self.tokens.get(self.index + 1).map(|next| &next.token) == Some(&Token::Open)
        {
            self.advance();
            self.advance();
            if self.peek().token == Token::Close {
                self.advance();
                return Ok(Select::Count);
            }
            let field = self.field_path()?;
            self.expect(&Token::Close)?;
            return Ok(Select::CountField(field));
        }
        let mut fields = vec![self.field_path()?];
        while self.peek().token == Token::Comma {
            self.advance();
            fields.push(self.field_path()?);
        }
        Ok(Select::Fields(fields))
    }

    fn order_item(&mut self) -> Result<OrderItem, SoqlError> {
        let field = self.field_path()?;
        let descending = if self.eat_keyword("DESC") {
            true
        } else {
            self.eat_keyword("ASC");
            false
        };
        let mut nulls_first = !descending;
        if self.eat_keyword("NULLS") {
            if self.eat_keyword("FIRST") {
                nulls_first = true;
            } else {
                self.expect_keyword("LAST")?;
                nulls_first = false;
            }
        }
        Ok(OrderItem {
            field,
            descending,
            nulls_first,
        })
    }

    /// `term ((AND term)* | (OR term)*)`: one kind of connective per level.
    fn condition(&mut self) -> Result<Condition, SoqlError> {
        let first = self.term()?;
        let connective = if self.at_keyword("AND") {
            "AND"
        } else if self.at_keyword("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let mut terms = vec![first];
        while self.eat_keyword(connective) {
            terms.push(self.term()?);
        }
        if self.at_keyword("AND") || self.at_keyword("OR") {
            return Err(self.unexpected());
        }
        Ok(if connective == "AND" {
            Condition::And(terms)
        } else {
            Condition::Or(terms)
        })
    }

    fn term(&mut self) -> Result<Condition, SoqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.term()?)));
        }
        if self.peek().token == Token::Open {
            self.advance();
            let inner = self.condition()?;
            self.expect(&Token::Close)?;
            return Ok(inner);
        }
        self.simple_condition()
    }

    fn simple_condition(&mut self) -> Result<Condition, SoqlError> {
        let field = self.field_path()?;
        if let Token::Op(op) = self.peek().token {
            self.advance();
            let value = self.literal()?;
            return Ok(Condition::Compare { field, op, value });
        }
        if self.eat_keyword("LIKE") {
            let pattern = self.literal()?;
            if !matches!(pattern.value, Literal::String(..)) {
                return Err(SoqlError::malformed(
                    "LIKE requires a string",
                    pattern.position,
                ));
            }
            return Ok(Condition::Like { field, pattern });
        }
        let negated = self.eat_keyword("NOT");
        if self.eat_keyword("IN") {
            let values = self.literal_list()?;
            return Ok(Condition::In {
                field,
                values,
                negated,
            });
        }
        if negated {
            return Err(self.unexpected());
        }
        for (keyword, negated) in [("INCLUDES", false), ("EXCLUDES", true)] {
            if self.eat_keyword(keyword) {
                let values = self.literal_list()?;
                return Ok(Condition::Includes {
                    field,
                    values,
                    negated,
                });
            }
        }
        Err(self.unexpected())
    }

    fn literal_list(&mut self) -> Result<Vec<LiteralAt>, SoqlError> {
        self.expect(&Token::Open)?;
        if self.at_keyword("SELECT") {
            return Err(SoqlError::malformed(
                "semi-join sub-selects are not supported by the sandbox",
                self.peek().position,
            ));
        }
        let mut values = vec![self.literal()?];
        while self.peek().token == Token::Comma {
            self.advance();
            values.push(self.literal()?);
        }
        self.expect(&Token::Close)?;
        Ok(values)
    }

    fn literal(&mut self) -> Result<LiteralAt, SoqlError> {
        let spanned = self.peek().clone();
        let value = match spanned.token {
            Token::String(value, pattern) => Literal::String(value, pattern),
            Token::Number(number) => Literal::Number(number),
            Token::Date(date) => Literal::Date(date),
            Token::DateTime(at) => Literal::DateTime(at),
            Token::Minus | Token::Plus => {
                let negative = spanned.token == Token::Minus;
                self.advance();
                match self.peek().token {
                    Token::Number(number) => {
                        Literal::Number(if negative { -number } else { number })
                    }
                    _ => return Err(self.unexpected()),
                }
            }
            Token::Word(ref word) if word.eq_ignore_ascii_case("null") => Literal::Null,
            Token::Word(ref word) if word.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Token::Word(ref word) if word.eq_ignore_ascii_case("false") => Literal::Bool(false),
            _ => return Err(self.unexpected()),
        };
        self.advance();
        Ok(LiteralAt {
            value,
            position: spanned.position,
        })
    }
}

/// Whether `text` matches a `LIKE` pattern (case-insensitive, like Salesforce).
pub fn like_matches(pattern: &[LikePiece], text: &str) -> bool {
    let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let pattern: Vec<LikePiece> = pattern
        .iter()
        .flat_map(|piece| -> Vec<LikePiece> {
            match piece {
                LikePiece::Char(character) => {
                    character.to_lowercase().map(LikePiece::Char).collect()
                }
                other => vec![*other],
            }
        })
        .collect();
    // Iterative wildcard matching with backtracking to the last `%`.
    let (mut text_index, mut pattern_index) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while text_index < text.len() {
        match pattern.get(pattern_index) {
            Some(LikePiece::AnyMany) => {
                backtrack = Some((pattern_index, text_index));
                pattern_index += 1;
            }
            Some(LikePiece::AnyOne) => {
                text_index += 1;
                pattern_index += 1;
            }
            Some(LikePiece::Char(character)) if *character == text[text_index] => {
                text_index += 1;
                pattern_index += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    pattern_index = star + 1;
                    text_index = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[pattern_index..]
        .iter()
        .all(|piece| *piece == LikePiece::AnyMany)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn where_of(text: &str) -> Condition {
        parse(text)
            .unwrap_or_else(|error| panic!("{text}: {}", error.message(text)))
            .filter
            .unwrap()
    }

    fn compare_value(condition: &Condition) -> &Literal {
        match condition {
            Condition::Compare { value, .. } => &value.value,
            other => panic!("not a comparison: {other:?}"),
        }
    }

    #[test]
    fn parses_the_incremental_pull_query() {
        let text = "SELECT Id, Name, Owner.Email, account.name FROM Contact \
                    WHERE SystemModstamp >= 2026-01-01T00:00:00Z AND (IsDeleted = false OR Name LIKE 'O\\'B%') \
                    ORDER BY SystemModstamp ASC, Id DESC NULLS FIRST LIMIT 500 OFFSET 10";
        let query = parse(text).unwrap();
        let Select::Fields(fields) = &query.select else {
            panic!()
        };
        assert_eq!(
            fields.iter().map(FieldPath::dotted).collect::<Vec<_>>(),
            ["Id", "Name", "Owner.Email", "account.name"]
        );
        assert_eq!(query.from, "Contact");
        assert_eq!(query.limit, Some(500));
        assert_eq!(query.offset, Some(10));
        assert_eq!(query.order_by.len(), 2);
        assert!(!query.order_by[0].descending && query.order_by[0].nulls_first);
        assert!(query.order_by[1].descending && query.order_by[1].nulls_first);
        let Some(Condition::And(terms)) = &query.filter else {
            panic!()
        };
        assert_eq!(
            compare_value(&terms[0]),
            &Literal::DateTime(at("2026-01-01T00:00:00Z"))
        );
        let Condition::Or(alternatives) = &terms[1] else {
            panic!()
        };
        let Condition::Like { pattern, .. } = &alternatives[1] else {
            panic!()
        };
        let Literal::String(value, pieces) = &pattern.value else {
            panic!()
        };
        assert_eq!(value, "O'B%");
        assert_eq!(pieces.last(), Some(&LikePiece::AnyMany));
    }

    #[test]
    fn datetime_literals_take_0_3_or_6_fraction_digits_and_any_offset() {
        for (text, expected) in [
            ("2026-05-20T20:49:32Z", "2026-05-20T20:49:32Z"),
            ("2026-05-20T20:49:32.123Z", "2026-05-20T20:49:32.123Z"),
            ("2026-05-20T20:49:32.123456Z", "2026-05-20T20:49:32.123456Z"),
            ("2026-05-20T20:49:32+02:00", "2026-05-20T18:49:32Z"),
            ("2026-05-20T20:49:32.5-05:30", "2026-05-21T02:19:32.5Z"),
        ] {
            let condition = where_of(&format!("SELECT Id FROM Task WHERE CreatedDate > {text}"));
            assert_eq!(
                compare_value(&condition),
                &Literal::DateTime(at(expected)),
                "{text}"
            );
        }
        let condition = where_of("SELECT Id FROM Task WHERE ActivityDate = 2026-02-28");
        assert_eq!(
            compare_value(&condition),
            &Literal::Date(NaiveDate::from_ymd_opt(2026, 2, 28).unwrap())
        );
    }

    #[test]
    fn literals_of_every_kind() {
        let condition = where_of(
            "SELECT Id FROM Account WHERE Name IN ('a', 'b\\\\c', 'd\\ne') AND Amount > -1.5 AND Flag = TRUE \
             AND Other != null AND Type NOT IN ('x') AND Payers__c INCLUDES ('Aetna;Cigna', 'Medicaid')",
        );
        let Condition::And(terms) = condition else {
            panic!()
        };
        let Condition::In {
            values,
            negated: false,
            ..
        } = &terms[0]
        else {
            panic!()
        };
        let texts: Vec<&str> = values
            .iter()
            .map(|value| match &value.value {
                Literal::String(text, _) => text.as_str(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(texts, ["a", "b\\c", "d\ne"]);
        assert_eq!(compare_value(&terms[1]), &Literal::Number(-1.5));
        assert_eq!(compare_value(&terms[2]), &Literal::Bool(true));
        assert_eq!(compare_value(&terms[3]), &Literal::Null);
        assert!(matches!(&terms[4], Condition::In { negated: true, .. }));
        assert!(
            matches!(&terms[5], Condition::Includes { negated: false, values, .. } if values.len() == 2)
        );
        assert!(matches!(
            where_of("SELECT Id FROM Account WHERE NOT (Name = 'a' OR Name = 'b')"),
            Condition::Not(inner) if matches!(*inner, Condition::Or(_))
        ));
        assert_eq!(
            parse("select count() from Contact").unwrap().select,
            Select::Count
        );
    }

    #[test]
    fn malformed_queries_point_at_the_problem() {
        // (query, error code, text the message contains)
        let cases = [
            (
                "SELECT Id FROMM Account",
                "MALFORMED_QUERY",
                "unexpected token: 'FROMM'",
            ),
            (
                "SELECT Id FROM Account WHERE",
                "MALFORMED_QUERY",
                "unexpected token: '<EOF>'",
            ),
            (
                "SELECT Id FROM Account WHERE A = 1 AND B = 2 OR C = 3",
                "MALFORMED_QUERY",
                "unexpected token: 'OR'",
            ),
            (
                "SELECT Id FROM Account WHERE Name = 'open",
                "MALFORMED_QUERY",
                "unterminated string",
            ),
            (
                "SELECT Id FROM Account WHERE Name = 'bad \\q'",
                "MALFORMED_QUERY",
                "Invalid string literal",
            ),
            (
                "SELECT Id FROM Account WHERE CreatedDate > 2026-13-01T00:00:00Z",
                "MALFORMED_QUERY",
                "no viable alternative",
            ),
            (
                "SELECT Id FROM Account WHERE CreatedDate > 2026-01-01T00:00:00",
                "MALFORMED_QUERY",
                "no viable alternative",
            ),
            (
                "SELECT Id FROM Account WHERE CreatedDate > 2026-01-01T00:00:00.1234567890Z",
                "MALFORMED_QUERY",
                "no viable",
            ),
            (
                "SELECT Id FROM Account OFFSET 2001",
                "NUMBER_OUTSIDE_VALID_RANGE",
                "Maximum SOQL offset allowed is 2000",
            ),
            (
                "SELECT Id FROM Account LIMIT -1",
                "MALFORMED_QUERY",
                "unexpected token: '-'",
            ),
            (
                "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact)",
                "MALFORMED_QUERY",
                "sub-selects",
            ),
            (
                "SELECT Id, FROM Account",
                "MALFORMED_QUERY",
                "unexpected token: 'FROM'",
            ),
            (
                "SELECT Id FROM Account GROUP BY Name",
                "MALFORMED_QUERY",
                "unexpected token: 'GROUP'",
            ),
            (
                "SELECT Id FROM Account WHERE Name = 'a' ;",
                "MALFORMED_QUERY",
                "unexpected token: ';'",
            ),
            ("", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
            (
                "SELECT Id FROM Account WHERE Name ~ 'x'",
                "MALFORMED_QUERY",
                "unexpected token: '~'",
            ),
            (
                "SELECT Id FROM Account WHERE Name = 12abc",
                "MALFORMED_QUERY",
                "unexpected token: '12abc'",
            ),
        ];
        for (text, code, needle) in cases {
            let error = parse(text).expect_err(text);
            assert_eq!(error.kind.error_code(), code, "{text}");
            let message = error.message(text);
            assert!(message.contains(needle), "{text}: {message}");
            assert!(
                message.contains("ERROR at Row:1:Column:"),
                "{text}: {message}"
            );
        }
        let message = parse("SELECT Id\nFROMM Account")
            .unwrap_err()
            .message("SELECT Id\nFROMM Account");
        assert!(
            message.starts_with("\nFROMM Account\n^\nERROR at Row:2:Column:1"),
            "{message}"
        );
    }

    #[test]
    fn like_is_case_insensitive_with_both_wildcards_and_escapes() {
        let pattern = |text: &str| match where_of(&format!(
            "SELECT Id FROM Account WHERE Name LIKE '{text}'"
        )) {
            Condition::Like { pattern, .. } => match pattern.value {
                Literal::String(_, pieces) => pieces,
                _ => panic!(),
            },
            _ => panic!(),
        };
        assert!(like_matches(&pattern("mercy%"), "Mercy Hospital ED"));
        assert!(like_matches(&pattern("%hospital%"), "Mercy Hospital ED"));
        assert!(like_matches(&pattern("M_rcy%ED"), "Mercy Hospital ED"));
        assert!(!like_matches(&pattern("M_rcy"), "Mercy Hospital"));
        assert!(like_matches(&pattern("100\\%"), "100%"));
        assert!(!like_matches(&pattern("100\\%"), "1000"));
        assert!(like_matches(&pattern("%a%b%"), "xxaxxbxx"));
        assert!(!like_matches(&pattern("%a%b"), "xxaxxbxx"));
        assert!(like_matches(&pattern("%"), ""));
    }
}
