//! A fitted log as a file (a sweep hands its world to worker processes): the rows, then the model
//! and its kept messages when built, as little-endian arrays each after its length. A file that
//! cannot be opened or written is an I/O error; one that does not hold a saved log (another
//! header, cut short, arrays that do not fit) is a format error.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use super::messages::Checkpoints;
use super::model::{Fit, Model, Stored};
use super::rows::LogRows;
use crate::error::{invalid, Error, Result};

const MAGIC: &[u8; 8] = b"DPSLOGW1";

/// Plain numbers as little-endian bytes.
trait Word: Copy + Default {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! word {
    ($($t:ty),*) => {$(
        impl Word for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("a whole word"))
            }
        }
    )*};
}
word!(i64, u64, u32, u16, f64, f32);

impl Word for half::f16 {
    const SIZE: usize = 2;
    fn put(self, out: &mut Vec<u8>) {
        self.to_bits().put(out);
    }
    fn get(bytes: &[u8]) -> Self {
        half::f16::from_bits(u16::get(bytes))
    }
}

struct Writer<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// The length, then the values.
    fn words<T: Word>(&mut self, xs: &[T]) -> std::io::Result<()> {
        (xs.len() as u64).put(&mut self.buf);
        for chunk in xs.chunks(1 << 14) {
            for &x in chunk {
                x.put(&mut self.buf);
            }
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

struct Reader<'a, R: Read> {
    input: R,
    buf: Vec<u8>,
    path: &'a Path,
}

impl<R: Read> Reader<'_, R> {
    /// What `Writer::words` wrote: at most `at_most` values (a bound from the file's size).
    fn words<T: Word>(&mut self, at_most: usize) -> Result<Vec<T>> {
        let n = self.one::<u64>()? as usize;
        if n > at_most {
            return Err(Error::format(
                self.path,
                format!("an array of {n} values where at most {at_most} fit"),
            ));
        }
        let mut out = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let take = left.min(1 << 14);
            self.buf.resize(take * T::SIZE, 0);
            self.fill()?;
            out.extend(self.buf.chunks_exact(T::SIZE).map(T::get));
            left -= take;
        }
        Ok(out)
    }

    fn one<T: Word>(&mut self) -> Result<T> {
        self.buf.resize(T::SIZE, 0);
        self.fill()?;
        Ok(T::get(&self.buf))
    }

    /// Fill the buffer from the file: a file that ends first is cut short (a format error).
    fn fill(&mut self) -> Result<()> {
        self.input.read_exact(&mut self.buf).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Error::format(self.path, "the file ends early (cut short?)")
            } else {
                Error::io(self.path, &e)
            }
        })
    }
}

impl LogRows {
    /// Write the rows and, when built, the model and its kept messages to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.write(path).map_err(|e| Error::io(path, &e))
    }

    fn write(&self, path: &Path) -> std::io::Result<()> {
        let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        let mut w = Writer {
            out: file,
            buf: Vec::new(),
        };
        w.out.write_all(MAGIC)?;
        w.words(&self.step)?;
        w.words(&self.offsets)?;
        let flat: Vec<i64> = self.pairs.iter().flat_map(|&(n, c)| [n, c]).collect();
        w.words(&flat)?;
        w.words(&self.pair_index)?;
        match &self.fit {
            Some(fit) => {
                let m = &fit.model;
                let head = [
                    m.grid() as u64,
                    m.rate.to_bits(),
                    m.prior_start.to_bits(),
                    m.prior_scale.to_bits(),
                ];
                w.words(&head)?;
                w.words(&[m.floor])?;
                w.words(&m.prior)?;
                w.words(&m.emission)?;
                w.words(&m.p_grid)?;
                match &fit.stored {
                    Stored::F16(c) => {
                        w.words(&[16u64, c.every as u64])?;
                        w.words(&c.forward)?;
                        w.words(&c.backward)?;
                    }
                    Stored::F32(c) => {
                        w.words(&[32u64, c.every as u64])?;
                        w.words(&c.forward)?;
                        w.words(&c.backward)?;
                    }
                }
            }
            None => w.words::<u64>(&[])?,
        }
        w.out.flush()
    }

    /// A log written by `save`, checked as `new` and `build` check theirs.
    pub fn load(path: &Path) -> Result<LogRows> {
        let log = Self::read(path)?;
        log.check_loaded()
            .map_err(|e| Error::format(path, e.to_string()))?;
        Ok(log)
    }

    fn read(path: &Path) -> Result<LogRows> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
        let size = file.metadata().map_err(|e| Error::io(path, &e))?.len() as usize;
        let mut r = Reader {
            input: std::io::BufReader::with_capacity(1 << 20, file),
            buf: Vec::new(),
            path,
        };
        r.buf.resize(MAGIC.len(), 0);
        r.fill()?;
        if r.buf != MAGIC {
            return Err(Error::format(path, "not a saved log world (wrong header)"));
        }
        let step = r.words::<i64>(size / 8)?;
        let offsets = r.words::<i64>(size / 8)?;
        let flat = r.words::<i64>(size / 8)?;
        let pairs = flat.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        let pair_index = r.words::<u32>(size / 4)?;
        let head = r.words::<u64>(4)?;
        let mut log = LogRows {
            step,
            offsets,
            pairs,
            pair_index,
            fit: None,
        };
        if head.len() != 4 {
            return Ok(log);
        }
        let floor = r.words::<f32>(1)?;
        let model = Model {
            rate: f64::from_bits(head[1]),
            prior_start: f64::from_bits(head[2]),
            prior_scale: f64::from_bits(head[3]),
            floor: floor.first().copied().unwrap_or(0.0),
            prior: r.words(size / 8)?,
            emission: r.words(size / 4)?,
            p_grid: r.words(size / 8)?,
        };
        if head[0] != model.grid() as u64 {
            return Err(Error::format(
                path,
                "the model's grid does not fit its rates",
            ));
        }
        let kind = r.words::<u64>(2)?;
        let every = kind.get(1).copied().unwrap_or(0) as usize;
        let stored = match kind.first() {
            Some(16) => Stored::F16(Checkpoints {
                every,
                forward: r.words(size / 2)?,
                backward: r.words(size / 2)?,
            }),
            Some(32) => Stored::F32(Checkpoints {
                every,
                forward: r.words(size / 4)?,
                backward: r.words(size / 4)?,
            }),
            _ => return Err(Error::format(path, "unknown message precision")),
        };
        log.fit = Some(Fit { model, stored });
        Ok(log)
    }

    /// The invariants `new` and `build` establish, for a log read from a file.
    fn check_loaded(&self) -> Result<()> {
        let n = self.rows();
        let ok = self.offsets.first() == Some(&0)
            && self.offsets.last() == Some(&(n as i64))
            && self.offsets.windows(2).all(|w| w[0] <= w[1]);
        if !ok {
            return invalid("offsets must rise from 0 to the number of rows");
        }
        if self.pair_index.len() != n
            || self
                .pair_index
                .iter()
                .any(|&i| i as usize >= self.pairs.len())
        {
            return invalid("a row's (n_rollouts, n_correct) index is missing or out of range");
        }
        let Some(fit) = &self.fit else {
            return Ok(());
        };
        let m = &fit.model;
        let grid = m.grid();
        let shapes = grid > 0
            && m.emission.len() == self.pairs.len() * grid
            && !m.prior.is_empty()
            && m.prior.len().is_multiple_of(grid)
            && (0.0..1.0).contains(&m.rate);
        if !shapes {
            return invalid("the model's tables do not fit its grid");
        }
        let (every, f, b) = match &fit.stored {
            Stored::F16(c) => (c.every, c.forward.len(), c.backward.len()),
            Stored::F32(c) => (c.every, c.forward.len(), c.backward.len()),
        };
        if every == 0 || f != n / every * grid || b != n.div_ceil(every) * grid {
            return invalid("the kept messages do not fit the rows");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{built, small};
    use super::*;

    #[test]
    fn a_saved_log_loads_back_and_a_damaged_one_is_an_error() {
        let mut log = small();
        built(&mut log, 0.05, 2);
        let dir = std::env::temp_dir().join(format!("dps-logworld-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rows.bin");
        log.save(&path).unwrap();
        let back = LogRows::load(&path).unwrap();
        let ids = [0, 1, 2];
        assert_eq!(
            back.rollout(4, &ids, 1, 8, 2, false).unwrap(),
            log.rollout(4, &ids, 1, 8, 2, false).unwrap()
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = LogRows::load(&path)
            .err()
            .expect("a file cut short is refused");
        assert!(matches!(err, Error::Format { .. }), "{err}");
        assert!(err.to_string().contains("cut short"), "{err}");
        std::fs::write(&path, b"not a log").unwrap();
        assert!(matches!(LogRows::load(&path), Err(Error::Format { .. })));
        let missing = dir.join("missing.bin");
        let err = LogRows::load(&missing)
            .err()
            .expect("a missing file is refused");
        assert!(
            matches!(
                err,
                Error::Io {
                    kind: ErrorKind::NotFound,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("missing.bin"), "{err}");
        let err = log
            .save(&dir.join("no-such-dir").join("rows.bin"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Io {
                    kind: ErrorKind::NotFound,
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
