"""The PostgreSQL 15 types sqlite-ha knows, one record each (oid, typname, format_type's name, aliases,
typlen, typcategory, array type, codecs), added to the one ``REGISTRY``."""

from __future__ import annotations

from collections.abc import Callable

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.types import arrays, datetimes, interval, numeric, timetz
from sqlite_ha.server.pgwire.types import scalars as s
from sqlite_ha.server.pgwire.types.registry import REGISTRY, BadParameter, Decoder, PgType

_int2 = s.int_codecs("int2", 16)
_int4 = s.int_codecs("int4", 32)
_int8 = s.int_codecs("int8", 64)


def _text_type(oid: int, name: str, sql_name: str, array: int, *aliases: str, length: int = -1) -> PgType:
    return PgType(
        oid=oid,
        name=name,
        sql_name=sql_name,
        length=length,
        category="S",
        array=array,
        aliases=aliases,
        text_out=s.text_out,
        text_in=s.text_in,
        binary_in=s.text_in,
    )


def _datetime_in(parse: Callable[[str], str]) -> Decoder:
    def decode(data: bytes) -> SQLiteValue:
        return parse(data.decode())

    return decode


for _type in (
    PgType(
        oid=16,
        name="bool",
        sql_name="boolean",
        length=1,
        category="B",
        array=1000,
        text_out=s.bool_text,
        binary_out=s.bool_binary,
        text_in=s.bool_in,
        binary_in=s.bool_recv,
    ),
    PgType(
        oid=17,
        name="bytea",
        sql_name="bytea",
        length=-1,
        category="U",
        array=1001,
        aliases=("blob",),
        text_out=s.bytea_text,
        binary_out=s.bytea_binary,
        text_in=s.bytea_in,
        binary_in=s.bytea_recv,
    ),
    _text_type(18, "char", '"char"', 1002, length=1),
    _text_type(19, "name", "name", 1003, length=64),
    PgType(
        oid=20,
        name="int8",
        sql_name="bigint",
        length=8,
        category="N",
        array=1016,
        aliases=("bigserial", "serial8", "int64"),
        text_out=_int8[0],
        binary_out=_int8[1],
        text_in=_int8[2],
        binary_in=_int8[3],
    ),
    PgType(
        oid=21,
        name="int2",
        sql_name="smallint",
        length=2,
        category="N",
        array=1005,
        aliases=("smallserial", "serial2", "tinyint"),
        text_out=_int2[0],
        binary_out=_int2[1],
        text_in=_int2[2],
        binary_in=_int2[3],
    ),
    PgType(
        oid=23,
        name="int4",
        sql_name="integer",
        length=4,
        category="N",
        array=1007,
        aliases=("int", "serial", "serial4", "mediumint"),
        text_out=_int4[0],
        binary_out=_int4[1],
        text_in=_int4[2],
        binary_in=_int4[3],
    ),
    PgType(
        oid=24,
        name="regproc",
        sql_name="regproc",
        length=4,
        category="N",
        array=1008,
        text_out=s.text_out,
        binary_out=s.oid_binary,
        text_in=s.text_in,
        binary_in=s.oid_recv,
    ),
    _text_type(25, "text", "text", 1009, "clob"),
    PgType(
        oid=26,
        name="oid",
        sql_name="oid",
        length=4,
        category="N",
        array=1028,
        text_out=s.text_out,
        binary_out=s.oid_binary,
        text_in=s.oid_in,
        binary_in=s.oid_recv,
    ),
    PgType(
        oid=114,
        name="json",
        sql_name="json",
        length=-1,
        category="U",
        array=199,
        text_out=s.text_out,
        text_in=s.json_in,
        binary_in=s.json_in,
    ),
    PgType(
        oid=700,
        name="float4",
        sql_name="real",
        length=4,
        category="N",
        array=1021,
        text_out=s.float4_out,
        binary_out=s.float4_binary,
        text_in=s.float_in,
        binary_in=s.float4_recv,
    ),
    PgType(
        oid=701,
        name="float8",
        sql_name="double precision",
        length=8,
        category="N",
        array=1022,
        aliases=("float", "double", "real8"),
        text_out=s.float8_text,
        binary_out=s.float8_binary,
        text_in=s.float_in,
        binary_in=s.float8_recv,
    ),
    PgType(
        oid=705,
        name="unknown",
        sql_name="unknown",
        length=-2,
        category="X",
        text_out=s.text_out,
        text_in=s.text_in,
        binary_in=s.text_in,
    ),
    _text_type(1042, "bpchar", "character", 1014, "char"),
    _text_type(1043, "varchar", "character varying", 1015, "nvarchar", "varying character"),
    PgType(
        oid=1082,
        name="date",
        sql_name="date",
        length=4,
        category="D",
        array=1182,
        text_out=datetimes.date_text,
        binary_out=datetimes.date_binary,
        text_in=_datetime_in(datetimes.parse_date),
        binary_in=datetimes.date_recv,
    ),
    PgType(
        oid=1083,
        name="time",
        sql_name="time without time zone",
        length=8,
        category="D",
        array=1183,
        text_out=datetimes.time_text,
        binary_out=datetimes.time_binary,
        text_in=_datetime_in(datetimes.parse_time),
        binary_in=datetimes.time_recv,
    ),
    PgType(
        oid=1266,
        name="timetz",
        sql_name="time with time zone",
        length=12,
        category="D",
        array=1270,
        text_out=timetz.text_out,
        binary_out=timetz.binary_out,
        text_in=timetz.text_in,
        binary_in=timetz.binary_in,
    ),
    PgType(
        oid=1114,
        name="timestamp",
        sql_name="timestamp without time zone",
        length=8,
        category="D",
        array=1115,
        aliases=("datetime",),
        text_out=datetimes.timestamp_text,
        binary_out=datetimes.timestamp_binary,
        text_in=lambda data: datetimes.parse_timestamp(data.decode(), False),
        binary_in=datetimes.timestamp_recv,
    ),
    PgType(
        oid=1184,
        name="timestamptz",
        sql_name="timestamp with time zone",
        length=8,
        category="D",
        array=1185,
        text_out=datetimes.timestamptz_text,
        binary_out=datetimes.timestamptz_binary,
        text_in=lambda data: datetimes.parse_timestamp(data.decode(), True),
        binary_in=datetimes.timestamp_recv,
    ),
    PgType(
        oid=1186,
        name="interval",
        sql_name="interval",
        length=16,
        category="T",
        array=1187,
        text_out=interval.text_out,
        binary_out=interval.binary_out,
        text_in=interval.text_in,
        binary_in=interval.binary_in,
    ),
    PgType(
        oid=1700,
        name="numeric",
        sql_name="numeric",
        length=-1,
        category="N",
        array=1231,
        aliases=("decimal",),
        text_out=numeric.text_out,
        binary_out=numeric.binary_out,
        text_in=numeric.text_in,
        binary_in=numeric.binary_in,
    ),
    PgType(
        oid=2950,
        name="uuid",
        sql_name="uuid",
        length=16,
        category="U",
        array=2951,
        text_out=s.uuid_text,
        binary_out=s.uuid_binary,
        text_in=s.uuid_in,
        binary_in=s.uuid_recv,
    ),
    PgType(
        oid=3802,
        name="jsonb",
        sql_name="jsonb",
        length=-1,
        category="U",
        array=3807,
        text_out=s.text_out,
        binary_out=s.jsonb_binary,
        text_in=s.jsonb_in,
        binary_in=s.jsonb_recv,
    ),
):
    REGISTRY.add(_type)


# Arrays: JSON text inside SQLite (which its JSON functions read), PostgreSQL's literal and binary format at
# the edge. The catalog's vectors (int2vector, oidvector) print as space-separated numbers.
def _array_type(array: arrays.ArrayType) -> PgType:
    def text_out(value: SQLiteValue) -> bytes:
        return arrays.literal(arrays.items(value), array).encode()

    def binary_out(value: SQLiteValue) -> bytes:
        element = REGISTRY.by_oid[array.element]
        encode = element.binary_out or element.text_out
        return arrays.pack([None if v is None else encode(v) for v in arrays.items(value)], array)

    def text_in(data: bytes) -> SQLiteValue:
        text = data.decode()
        if not text.lstrip().startswith("{"):
            return text
        element = REGISTRY.by_oid[array.element]
        values = [None if v is None else element.text_in(v.encode()) for v in arrays.literal_items(text)]
        return s.json_text([s.bytes_text(v) if isinstance(v, bytes) else v for v in values])

    def binary_in(data: bytes) -> SQLiteValue:
        element_oid, raw = arrays.unpack(data)
        element = REGISTRY.by_oid.get(element_oid) or REGISTRY.by_oid[array.element]
        decode = element.binary_in
        if decode is None:
            raise BadParameter(f"binary arrays of {element.name} are not supported")
        values = [None if b is None else decode(b) for b in raw]
        return s.json_text([s.bytes_text(v) if isinstance(v, bytes) else v for v in values])

    element = REGISTRY.by_oid[array.element]
    return PgType(
        oid=array.oid,
        name=array.name,
        sql_name=array.name if array.vector else f"{element.sql_name}[]",
        length=-1,
        category="A",
        element=array.element,
        text_out=text_out,
        binary_out=binary_out,
        text_in=text_in,
        binary_in=binary_in,
    )


for _array in arrays.ARRAY_TYPES.values():
    REGISTRY.add(_array_type(_array))
