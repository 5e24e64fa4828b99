//! Decoder of PostgreSQL logical replication messages, pgoutput protocol version 1 (the
//! payload of one `XLogData`). See "Logical Replication Message Formats" in the PostgreSQL
//! manual. [`decode`] never panics: malformed input is a [`DecodeError`] naming the message tag,
//! the field and the byte offset.

pub use super::reader::DecodeError;
use super::reader::Reader;

/// A PostgreSQL object id (relation, type).
pub type Oid = u32;

/// A WAL position (log sequence number).
pub type Lsn = u64;

/// Microseconds between 1970-01-01 and 2000-01-01, the PostgreSQL epoch.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Converts a pgoutput timestamp (µs since 2000-01-01 UTC) to µs since the Unix epoch.
pub fn pg_time_to_unix_micros(pg_micros: i64) -> i64 {
    pg_micros.saturating_add(PG_EPOCH_OFFSET_MICROS)
}

/// Formats an LSN the way PostgreSQL prints it (`16/B374D848`).
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgMessage {
    /// `B`: a transaction starts.
    Begin(Begin),
    /// `C`: the transaction commits.
    Commit(Commit),
    /// `O`: the transaction was replayed from another origin (sent after Begin).
    Origin(Origin),
    /// `R`: shape of a table, sent before its first row change (and after changes).
    Relation(Relation),
    /// `Y`: a non-built-in type used by a relation.
    Type(TypeInfo),
    /// `I`: a row was inserted.
    Insert(Insert),
    /// `U`: a row was updated.
    Update(Update),
    /// `D`: a row was deleted.
    Delete(Delete),
    /// `T`: tables were truncated.
    Truncate(Truncate),
    /// `M`: a `pg_logical_emit_message` message.
    Message(LogicalMessage),
}

/// `B`: start of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the commit record.
    pub final_lsn: Lsn,
    /// Commit time, µs since 2000-01-01 UTC (see [`pg_time_to_unix_micros`]).
    pub commit_time: i64,
    /// Transaction id.
    pub xid: u32,
}

/// `C`: end of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Flags (currently unused by PostgreSQL, 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End LSN of the transaction: where to confirm up to.
    pub end_lsn: Lsn,
    /// Commit time, µs since 2000-01-01 UTC.
    pub commit_time: i64,
}

/// `O`: the transaction came from a replication origin (e.g. meshsync's own apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Commit LSN on the origin server, as the applier set it.
    pub lsn: Lsn,
    /// Origin name.
    pub name: String,
}

/// How the old row is identified in updates and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `d`: primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: a chosen unique index.
    Index,
}

/// `R`: the shape of a table as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Relation OID; row messages refer to it.
    pub oid: Oid,
    /// Schema (empty for `pg_catalog`).
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Replica identity setting.
    pub replica_identity: ReplicaIdentity,
    /// Published columns, in tuple order.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Flags: bit 1 marks a replica identity column (every column under FULL).
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: Oid,
    /// Type modifier (`atttypmod`), -1 when none.
    pub type_modifier: i32,
}

impl RelationColumn {
    /// Whether the column is part of the replica identity (not necessarily the primary key).
    pub fn is_identity(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// `Y`: a type that is not built in (enum, domain, composite, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// Type OID.
    pub oid: Oid,
    /// Schema (empty for `pg_catalog`).
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// One column of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleColumn {
    /// `n`: SQL NULL (or, in a key-only old tuple, "not part of the key").
    Null,
    /// `u`: an unchanged TOASTed value that was not sent.
    UnchangedToast,
    /// `t`: the value in text format, in the server encoding.
    Text(Vec<u8>),
    /// `b`: the value in binary format (only with the `binary` option).
    Binary(Vec<u8>),
}

/// The columns of one row, in relation column order.
pub type TupleData = Vec<TupleColumn>;

/// The old row sent with an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only replica identity columns hold values; the others are `n`.
    Key(TupleData),
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full(TupleData),
}

impl OldTuple {
    /// The columns, whatever the kind.
    pub fn columns(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// `I`: a new row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Relation OID.
    pub relation: Oid,
    /// The new row.
    pub new: TupleData,
}

/// `U`: an updated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Relation OID.
    pub relation: Oid,
    /// The old row: with FULL always, with a key only when the key changed.
    pub old: Option<OldTuple>,
    /// The new row.
    pub new: TupleData,
}

/// `D`: a deleted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Relation OID.
    pub relation: Oid,
    /// The old key or row.
    pub old: OldTuple,
}

/// `T`: truncated relations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Option bits: 1 = CASCADE, 2 = RESTART IDENTITY.
    pub options: u8,
    /// OIDs of the truncated relations.
    pub relations: Vec<Oid>,
}

impl Truncate {
    /// Whether `CASCADE` was given.
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    /// Whether `RESTART IDENTITY` was given.
    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// `M`: a logical decoding message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Flags: bit 1 = transactional.
    pub flags: u8,
    /// LSN of the message.
    pub lsn: Lsn,
    /// Prefix given to `pg_logical_emit_message`.
    pub prefix: String,
    /// Content bytes.
    pub content: Vec<u8>,
}

impl LogicalMessage {
    /// Whether the message was emitted as part of a transaction.
    pub fn transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// Decodes one pgoutput v1 message. Never panics.
pub fn decode(buf: &[u8]) -> Result<PgMessage, DecodeError> {
    let Some(&tag) = buf.first() else {
        return Err(DecodeError::Empty);
    };
    let mut r = Reader::new(buf, char::from(tag));
    let msg = match tag {
        b'B' => PgMessage::Begin(Begin {
            final_lsn: r.u64("final LSN")?,
            commit_time: r.i64("commit timestamp")?,
            xid: r.u32("xid")?,
        }),
        b'C' => PgMessage::Commit(Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.u64("commit LSN")?,
            end_lsn: r.u64("end LSN")?,
            commit_time: r.i64("commit timestamp")?,
        }),
        b'O' => PgMessage::Origin(Origin {
            lsn: r.u64("origin LSN")?,
            name: r.cstr("origin name")?,
        }),
        b'R' => PgMessage::Relation(relation(&mut r)?),
        b'Y' => PgMessage::Type(TypeInfo {
            oid: r.u32("type OID")?,
            namespace: r.cstr("namespace")?,
            name: r.cstr("type name")?,
        }),
        b'I' => {
            let relation = r.u32("relation OID")?;
            expect_marker(&mut r, b'N')?;
            PgMessage::Insert(Insert {
                relation,
                new: tuple(&mut r)?,
            })
        }
        b'U' => update(&mut r)?,
        b'D' => {
            let relation = r.u32("relation OID")?;
            let offset = r.pos();
            let old = match r.u8("tuple marker")? {
                b'K' => OldTuple::Key(tuple(&mut r)?),
                b'O' => OldTuple::Full(tuple(&mut r)?),
                other => return Err(r.unexpected("tuple marker", offset, other)),
            };
            PgMessage::Delete(Delete { relation, old })
        }
        b'T' => {
            let n = r.count(true, "relation count")?;
            let options = r.u8("options")?;
            let mut relations = Vec::with_capacity(n.min(r.remaining() / 4));
            for _ in 0..n {
                relations.push(r.u32("relation OID")?);
            }
            PgMessage::Truncate(Truncate { options, relations })
        }
        b'M' => {
            let flags = r.u8("flags")?;
            let lsn = r.u64("message LSN")?;
            let prefix = r.cstr("prefix")?;
            let len = r.count(true, "content length")?;
            let content = r.bytes(len, "content")?.to_vec();
            PgMessage::Message(LogicalMessage {
                flags,
                lsn,
                prefix,
                content,
            })
        }
        _ => return Err(DecodeError::UnknownTag { tag }),
    };
    r.finish()?;
    Ok(msg)
}

/// Body of `R`.
fn relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let oid = r.u32("relation OID")?;
    let namespace = r.cstr("namespace")?;
    let name = r.cstr("relation name")?;
    let offset = r.pos();
    let replica_identity = match r.u8("replica identity")? {
        b'd' => ReplicaIdentity::Default,
        b'n' => ReplicaIdentity::Nothing,
        b'f' => ReplicaIdentity::Full,
        b'i' => ReplicaIdentity::Index,
        other => return Err(r.unexpected("replica identity", offset, other)),
    };
    let n = r.count(false, "column count")?;
    // Each column takes at least 10 bytes: never reserve more than the input can hold.
    let mut columns = Vec::with_capacity(n.min(r.remaining() / 10));
    for _ in 0..n {
        columns.push(RelationColumn {
            flags: r.u8("column flags")?,
            name: r.cstr("column name")?,
            type_oid: r.u32("column type OID")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

/// Body of `U`: optional `K`/`O` old tuple, then `N` new tuple.
fn update(r: &mut Reader<'_>) -> Result<PgMessage, DecodeError> {
    let relation = r.u32("relation OID")?;
    let offset = r.pos();
    let old = match r.u8("tuple marker")? {
        b'K' => Some(OldTuple::Key(tuple(r)?)),
        b'O' => Some(OldTuple::Full(tuple(r)?)),
        b'N' => None,
        other => return Err(r.unexpected("tuple marker", offset, other)),
    };
    if old.is_some() {
        expect_marker(r, b'N')?;
    }
    Ok(PgMessage::Update(Update {
        relation,
        old,
        new: tuple(r)?,
    }))
}

/// Reads a tuple marker byte that must be `want`.
fn expect_marker(r: &mut Reader<'_>, want: u8) -> Result<(), DecodeError> {
    let offset = r.pos();
    match r.u8("tuple marker")? {
        b if b == want => Ok(()),
        other => Err(r.unexpected("tuple marker", offset, other)),
    }
}

/// TupleData: Int16 column count, then per column a kind byte and maybe a length-prefixed value.
fn tuple(r: &mut Reader<'_>) -> Result<TupleData, DecodeError> {
    let n = r.count(false, "tuple column count")?;
    let mut cols = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        let offset = r.pos();
        let col = match r.u8("tuple column kind")? {
            b'n' => TupleColumn::Null,
            b'u' => TupleColumn::UnchangedToast,
            b't' => {
                let len = r.count(true, "column value length")?;
                TupleColumn::Text(r.bytes(len, "column value")?.to_vec())
            }
            b'b' => {
                let len = r.count(true, "column value length")?;
                TupleColumn::Binary(r.bytes(len, "column value")?.to_vec())
            }
            other => return Err(r.unexpected("tuple column kind", offset, other)),
        };
        cols.push(col);
    }
    Ok(cols)
}
