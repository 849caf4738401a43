//! The full-text index (tantivy), derived from redb and never trusted over it. One document per
//! unique row: its content hash (stored), its family tags and its representative text (indexed,
//! not stored: snippets are cut from the text in redb). Every tantivy commit carries the redb
//! commit sequence number it reflects as its payload; on open, a lagging index replays the hashes
//! redb logged since (`fts_log`), and one that cannot be caught up is rebuilt from scratch.

use std::path::{Path, PathBuf};

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::model::Conversation;
use crate::store::{ReadView, Store};

const WRITER_MEMORY: usize = 128 << 20;

/// How the full-text index was brought in line with redb on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catchup {
    UpToDate,
    Replayed { rows: usize },
    Rebuilt { rows: usize },
}

/// One search hit, before provenance is attached.
#[derive(Debug, Clone)]
pub struct RawHit {
    pub content_hash: Hash128,
    pub score: f32,
}

pub struct SearchIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    writer: Option<IndexWriter>,
    f_hash: Field,
    f_family: Field,
    f_text: Field,
}

fn schema() -> (Schema, Field, Field, Field) {
    let mut b = Schema::builder();
    let f_hash = b.add_text_field("content_hash", STRING | STORED);
    let f_family = b.add_text_field("family", STRING);
    let f_text = b.add_text_field("text", TEXT);
    (b.build(), f_hash, f_family, f_text)
}

impl SearchIndex {
    fn err(&self, source: tantivy::TantivyError) -> Error {
        Error::Search {
            path: self.dir.clone(),
            source,
        }
    }

    /// Open (creating if needed). With `writable`, takes tantivy's writer lock.
    pub fn open(dir: &Path, writable: bool) -> Result<Self> {
        let wrap = |source| Error::Search {
            path: dir.to_path_buf(),
            source,
        };
        let (schema, f_hash, f_family, f_text) = schema();
        let index = if dir.join("meta.json").exists() {
            Index::open_in_dir(dir).map_err(wrap)?
        } else if writable {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            Index::create_in_dir(dir, schema).map_err(wrap)?
        } else {
            return Err(Error::NoIndex(dir.to_path_buf()));
        };
        let writer = if writable {
            Some(
                index
                    .writer_with_num_threads(1, WRITER_MEMORY)
                    .map_err(wrap)?,
            )
        } else {
            None
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(wrap)?;
        Ok(SearchIndex {
            dir: dir.to_path_buf(),
            index,
            reader,
            writer,
            f_hash,
            f_family,
            f_text,
        })
    }

    /// The redb commit this index reflects (0 for an empty, never committed index).
    pub fn committed_seq(&self) -> Result<u64> {
        let metas = self.index.load_metas().map_err(|e| self.err(e))?;
        Ok(metas
            .payload
            .and_then(|p| p.trim().parse::<u64>().ok())
            .unwrap_or(0))
    }

    /// Bring the index in line with redb: replay the log, or rebuild when it cannot be replayed.
    pub fn catch_up(&mut self, store: &Store) -> Result<Catchup> {
        let view = store.read()?;
        let target = view.seq()?;
        let at = self.committed_seq()?;
        if at == target {
            return Ok(Catchup::UpToDate);
        }
        if at < target {
            if let Some(hashes) = view.fts_log_since(at)? {
                let rows = hashes.len();
                self.apply(&view, &hashes, target)?;
                return Ok(Catchup::Replayed { rows });
            }
        }
        let rows = self.rebuild(&view)?;
        Ok(Catchup::Rebuilt { rows })
    }

    fn writer(&mut self) -> Result<&mut IndexWriter> {
        let dir = self.dir.clone();
        self.writer.as_mut().ok_or_else(|| Error::Search {
            path: dir,
            source: tantivy::TantivyError::InvalidArgument("opened read-only".into()),
        })
    }

    fn document<'a>(
        &self,
        hex: String,
        conversation: &Conversation,
        families: impl Iterator<Item = &'a str>,
    ) -> TantivyDocument {
        let mut text = String::with_capacity(conversation.content_bytes() + 8);
        for m in conversation.all_messages() {
            text.push_str(&m.content);
            text.push('\n');
        }
        let mut d = doc!(self.f_hash => hex, self.f_text => text);
        for family in families {
            d.add_text(self.f_family, family);
        }
        d
    }

    fn add_document(&mut self, d: TantivyDocument) -> Result<()> {
        let dir = self.dir.clone();
        self.writer()?
            .add_document(d)
            .map_err(|source| Error::Search { path: dir, source })?;
        Ok(())
    }

    /// Index a row that did not exist before this batch, straight from the ingest (no redb
    /// read). Visible to searches after the next [`SearchIndex::apply`] commit.
    pub fn add_new_row(
        &mut self,
        hash: Hash128,
        conversation: &Conversation,
        families: &[String],
    ) -> Result<()> {
        let d = self.document(
            hash.to_hex(),
            conversation,
            families.iter().map(String::as_str),
        );
        self.add_document(d)
    }

    fn add_row(&mut self, view: &ReadView, hash: Hash128) -> Result<()> {
        let hex = hash.to_hex();
        let f_hash = self.f_hash;
        self.writer()?
            .delete_term(Term::from_field_text(f_hash, &hex));
        if let (Some(row), Some(rep)) = (view.row(hash)?, view.representative(hash)?) {
            let d = self.document(
                hex,
                &rep.conversation,
                row.families.iter().map(|(f, _)| f.as_str()),
            );
            self.add_document(d)?;
        }
        Ok(())
    }

    /// Commit everything added since the last commit, as reflecting redb commit `seq`.
    pub fn commit(&mut self, seq: u64) -> Result<()> {
        let dir = self.dir.clone();
        let wrap = |source| Error::Search {
            path: dir.clone(),
            source,
        };
        let writer = self.writer()?;
        let mut prepared = writer.prepare_commit().map_err(wrap)?;
        prepared.set_payload(&seq.to_string());
        prepared.commit().map_err(wrap)?;
        self.reader.reload().map_err(wrap)?;
        Ok(())
    }

    /// Drop every change since the last commit (after a failed redb batch: what was added early
    /// must never be published). Rows of redb commits made meanwhile are replayed from `fts_log`.
    pub fn rollback(&mut self) -> Result<()> {
        let dir = self.dir.clone();
        self.writer()?
            .rollback()
            .map_err(|source| Error::Search { path: dir, source })?;
        Ok(())
    }

    /// Re-index the given rows from the snapshot (removed rows are deleted), then commit
    /// everything added since the last commit as redb commit `seq`.
    pub fn apply(&mut self, view: &ReadView, hashes: &[Hash128], seq: u64) -> Result<()> {
        self.reindex(view, hashes)?;
        self.commit(seq)
    }

    /// Re-index the given rows from the snapshot without committing (see [`SearchIndex::commit`]).
    pub fn reindex(&mut self, view: &ReadView, hashes: &[Hash128]) -> Result<()> {
        for &h in hashes {
            self.add_row(view, h)?;
        }
        Ok(())
    }

    /// Drop everything and index every row of the snapshot.
    pub fn rebuild(&mut self, view: &ReadView) -> Result<usize> {
        let dir = self.dir.clone();
        self.writer()?
            .delete_all_documents()
            .map_err(|source| Error::Search { path: dir, source })?;
        let mut hashes = Vec::new();
        view.for_each_row(|h, _| {
            hashes.push(h);
            Ok(())
        })?;
        for &h in &hashes {
            self.add_row(view, h)?;
        }
        self.commit(view.seq()?)?;
        Ok(hashes.len())
    }

    /// Full-text search; `family` restricts to rows carrying that family tag.
    pub fn search(
        &self,
        query: &str,
        family: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<RawHit>, Box<dyn Query>)> {
        let parser = QueryParser::for_index(&self.index, vec![self.f_text]);
        let text_query = parser
            .parse_query(query)
            .map_err(|e| Error::Query(format!("`{query}`: {e}")))?;
        let full: Box<dyn Query> = match family {
            None => text_query.box_clone(),
            Some(f) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, text_query.box_clone()),
                (
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(self.f_family, f),
                        IndexRecordOption::Basic,
                    )),
                ),
            ])),
        };
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&*full, &TopDocs::with_limit(limit.max(1)).order_by_score())
            .map_err(|e| self.err(e))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let d: TantivyDocument = searcher.doc(address).map_err(|e| self.err(e))?;
            let hash = d
                .get_first(self.f_hash)
                .and_then(|v| v.as_str())
                .and_then(Hash128::from_hex);
            if let Some(content_hash) = hash {
                hits.push(RawHit {
                    content_hash,
                    score,
                });
            }
        }
        Ok((hits, text_query))
    }

    /// Every row the query matches (for a derive recipe's `query` selection; the caller keeps
    /// only rows redb has).
    pub fn matching(&self, query: &str) -> Result<std::collections::BTreeSet<Hash128>> {
        let parser = QueryParser::for_index(&self.index, vec![self.f_text]);
        let parsed = parser
            .parse_query(query)
            .map_err(|e| Error::Query(format!("`{query}`: {e}")))?;
        let searcher = self.reader.searcher();
        let docs = searcher
            .search(&*parsed, &tantivy::collector::DocSetCollector)
            .map_err(|e| self.err(e))?;
        let mut out = std::collections::BTreeSet::new();
        for address in docs {
            let d: TantivyDocument = searcher.doc(address).map_err(|e| self.err(e))?;
            if let Some(h) = d
                .get_first(self.f_hash)
                .and_then(|v| v.as_str())
                .and_then(Hash128::from_hex)
            {
                out.insert(h);
            }
        }
        Ok(out)
    }

    /// A snippet of `text` around the query's terms, matches wrapped in `**`.
    pub fn snippet(&self, query: &dyn Query, text: &str) -> Result<String> {
        let searcher = self.reader.searcher();
        let generator = tantivy::snippet::SnippetGenerator::create(&searcher, query, self.f_text)
            .map_err(|e| self.err(e))?;
        let snippet = generator.snippet(text);
        let fragment = snippet.fragment();
        if fragment.is_empty() {
            return Ok(text.chars().take(150).collect());
        }
        let mut out = String::with_capacity(fragment.len() + 16);
        let mut at = 0;
        for r in snippet.highlighted() {
            out.push_str(&fragment[at..r.start]);
            out.push_str("**");
            out.push_str(&fragment[r.start..r.end]);
            out.push_str("**");
            at = r.end;
        }
        out.push_str(&fragment[at..]);
        Ok(out)
    }
}
