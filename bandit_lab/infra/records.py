"""Columnar records: an experiment's results as one array per field, written as ``records.npz``.

A sweep's records are a table — one row per point, the same fields in every row. Kept as a list
of JSON dicts, 12,288 rows (a 4,096-point weight-decay sweep) took seconds to build, check and
write, and a 10⁵-point sweep hundreds of MB. :class:`Table` keeps the columns as NumPy arrays
(what the numerics produce anyway) and still behaves as the list of row dicts that reports and
plots iterate over (``len``, indexing, iteration build rows lazily).

**File format** (``records.npz``, NumPy's zip of ``.npy`` arrays, read with
``numpy.load(path, allow_pickle=False)`` or :func:`load`; no dependency beyond NumPy — Arrow or
Parquet would add pyarrow, ~100 MB, for a flat table of numbers NumPy reads natively):

- one array per field, named by the field (nested dicts flattened with ``.``: ``settings`` are
  not stored here, they are in ``records.json``); axis 0 is the row, further axes the field's
  own shape (a policy of K responses is ``[N, K]``);
- dtypes: float64 for numbers, int64 for integers, bool, unicode strings (``<U…``) for text;
- a field that is ``None`` in some rows (e.g. ``oracle`` where no closed form exists) is stored
  as NaN there (0 / False / "" for integer, boolean and text fields), with a boolean
  ``FIELD.__null__`` column marking those rows (NaN is never a
  value of a record: non-finite results are refused before anything is written); a field that
  some rows do not have at all (experiments whose records are of several kinds) likewise, marked
  by ``FIELD.__absent__``;
- a field whose rows do not share one shape (ragged lists) or one type is stored as JSON text
  per row, with ``FIELD.__json__`` = True (a scalar) marking it;
- ``__n__`` (scalar int64): the number of rows; ``__fields__``: the field names in row order.

``records.json`` keeps the settings and summary values, and the records themselves while there
are at most :data:`JSON_MAX_RECORDS` of them; above that it says ``"records": "records.npz"``.
"""
from __future__ import annotations

import io
import json
import zipfile
from typing import Iterator, Mapping

import numpy as np

from bandit_lab.errors import BanditError

JSON_MAX_RECORDS = 10_000  # above this, records.json points to records.npz instead of listing them

_NULL, _JSON, _ABSENT = ".__null__", ".__json__", ".__absent__"


class Table:
    """Records as columns: ``{field: array [N, …]}`` plus the rows where a field is ``None``."""

    def __init__(self, columns: Mapping[str, object], nulls: Mapping[str, np.ndarray] | None = None, n: int | None = None,
                 json_fields: tuple = (), absent: Mapping[str, np.ndarray] | None = None):
        self.columns = {k: (v if k in json_fields else np.asarray(v)) for k, v in columns.items()}
        self.nulls = {k: np.asarray(m, dtype=bool) for k, m in (nulls or {}).items() if np.any(m)}
        self.absent = {k: np.asarray(m, dtype=bool) for k, m in (absent or {}).items() if np.any(m)}
        self.json_fields = tuple(json_fields)
        lens = {len(v) for v in self.columns.values()}
        if n is None:
            if len(lens) > 1:
                raise ValueError(f"columns of unequal length: {sorted(lens)}")
            n = lens.pop() if lens else 0
        elif lens and lens != {n}:
            raise ValueError(f"columns of length {sorted(lens)}, expected {n}")
        self.n = int(n)

    # -- the list-of-dicts view --------------------------------------------------------------
    def __len__(self) -> int:
        return self.n

    def row(self, i: int) -> dict:
        out = {}
        for k, v in self.columns.items():
            if k in self.absent and self.absent[k][i]:
                continue
            if k in self.nulls and self.nulls[k][i]:
                out[k] = None
            elif k in self.json_fields:
                out[k] = json.loads(v[i]) if isinstance(v[i], str) else v[i]
            else:
                x = v[i]
                out[k] = x.tolist() if isinstance(x, np.ndarray) else x.item() if hasattr(x, "item") else x
        return out

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.row(j) for j in range(*i.indices(self.n))]
        i = int(i)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.row(i)

    def __iter__(self) -> Iterator[dict]:
        return (self.row(i) for i in range(self.n))

    def rows(self) -> list[dict]:
        return [self.row(i) for i in range(self.n)]

    def __eq__(self, other) -> bool:
        if isinstance(other, Table):
            other = other.rows()
        return isinstance(other, list) and self.rows() == other

    def __repr__(self) -> str:
        return f"Table({self.n} rows: {', '.join(self.columns)})"

    def column(self, name: str) -> np.ndarray:
        """The column as an array (float NaN where the field is ``None``)."""
        return self.columns[name]

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: list[dict]) -> "Table":
        """Any list of flat-or-nested JSON-like dicts (the records every experiment returns)."""
        rows = [_flatten(r) for r in rows]
        fields = list(dict.fromkeys(k for r in rows for k in r))
        cols, nulls, js, absent = {}, {}, [], {}
        for f in fields:
            vals = [r.get(f) for r in rows]
            gone = np.array([f not in r for r in rows], dtype=bool)
            if gone.any():
                absent[f] = gone
            null = np.array([v is None for v in vals], dtype=bool)
            arr = _as_array([v for v in vals if v is not None])
            if arr is None:  # ragged or mixed: JSON text per row
                cols[f] = np.array([json.dumps(v, allow_nan=False) for v in vals])
                js.append(f)
                continue
            if null.any():
                nulls[f] = null & ~gone
                # the field's own dtype; the rows without a value hold NaN (float), 0 / False
                # (int, bool) or "" (text) — the masks, not these fillers, say which rows they are
                full = np.full((len(rows),) + arr.shape[1:], _blank(arr.dtype), dtype=arr.dtype)
                full[~null] = arr
                arr = full
            cols[f] = arr
        return cls(cols, nulls, len(rows), tuple(js), absent)

    # -- files -------------------------------------------------------------------------------
    def to_npz(self) -> dict[str, np.ndarray]:
        out = {"__n__": np.int64(self.n), "__fields__": np.array(list(self.columns), dtype=str)}
        for k, v in self.columns.items():
            out[k] = np.asarray(v)
            if k in self.nulls:
                out[k + _NULL] = self.nulls[k]
            if k in self.absent:
                out[k + _ABSENT] = self.absent[k]
            if k in self.json_fields:
                out[k + _JSON] = np.bool_(True)
        return out

    def save(self, path: str) -> str:
        """Write ``records.npz`` atomically (:mod:`bandit_lab.infra.files`); uncompressed: a 10⁵-row
        sweep writes in well under a second and loads without inflating."""
        from bandit_lab.infra import files

        buf = io.BytesIO()
        np.savez(buf, **self.to_npz())
        with files.atomic(path, "wb") as fh:
            fh.write(buf.getbuffer())
        return path


def load(path: str) -> Table:
    """Read ``records.npz`` (or a ``records.json`` whose records are listed, or point to the npz)."""
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as fh:
                obj = json.load(fh)
        except (OSError, ValueError) as e:
            raise BanditError(f"cannot read {path}: {e}") from None
        recs = obj.get("records", obj) if isinstance(obj, dict) else obj
        if isinstance(recs, str):
            import os

            return load(os.path.join(os.path.dirname(path), recs))
        return Table.from_rows(recs)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise BanditError(f"cannot read {path}: {e}") from None
    fields = [str(f) for f in data["__fields__"]]
    cols = {f: data[f] for f in fields}
    nulls = {f: data[f + _NULL] for f in fields if f + _NULL in data}
    js = tuple(f for f in fields if f + _JSON in data)
    absent = {f: data[f + _ABSENT] for f in fields if f + _ABSENT in data}
    return Table(cols, nulls, int(data["__n__"]), js, absent)


def as_table(records) -> Table:
    return records if isinstance(records, Table) else Table.from_rows(list(records))


def jsonable_records(records) -> list[dict]:
    """Plain row dicts (for ``records.json`` and ``--json``)."""
    return records.rows() if isinstance(records, Table) else records


def first_nonfinite(t: Table) -> str | None:
    """``records[i].field[j]`` of the first NaN/±inf (``None`` rows excluded), or ``None``."""
    for k, v in t.columns.items():
        if k in t.json_fields or v.dtype.kind not in "fc":
            continue
        bad = ~np.isfinite(v)
        for m in (t.nulls.get(k), t.absent.get(k)):
            if m is not None:
                bad &= ~m.reshape((-1,) + (1,) * (v.ndim - 1))
        if bad.any():
            idx = np.argwhere(bad)[0]
            return f"records[{idx[0]}].{k}" + "".join(f"[{i}]" for i in idx[1:])
    return None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _blank(dtype):
    return {"U": "", "f": np.nan, "b": False}.get(dtype.kind, 0)


def _as_array(vals: list):
    """One array for the non-null values of a field, or ``None`` if they are ragged/mixed."""
    if not vals:
        return np.zeros((0,))
    kinds = {type(v) for v in vals}
    if kinds <= {bool, np.bool_}:
        return np.asarray(vals, dtype=bool)
    if kinds <= {str}:
        return np.asarray(vals, dtype=str)
    if kinds <= {int, np.integer, np.int64, np.int32} and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        a = np.asarray(vals)
        return a if a.dtype.kind == "i" else None
    try:
        a = np.asarray(vals, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    return a
