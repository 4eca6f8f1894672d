"""Bad text tables: structure, delimiters, encodings, sizes, compression."""

from __future__ import annotations

import codecs
import gzip

import pytest

from usm_geo.errors import InputFileError

from .helpers import (
    assert_error,
    entries,
    good_rows,
    incidents_csv,
    ledger_rows,
    run,
    study_file,
    write_bytes,
)

HEADER = "id,lon,lat,date,category"


def test_ragged_rows_are_ledgered_with_their_data_row_after_a_quoted_newline(tmp_path):
    incidents_csv(
        tmp_path,
        '1,15.03,52.38,2021-05-01,"theft\nfrom a car"',  # one record over two lines
        "2,15.10,52.41,2021-05-02,theft,EXTRA",  # too many fields
        "3,15.07,52.40,2021-05-03",  # too few
        "4,15.12,52.43,2021-05-04,robbery",
        '5,15.02,52.36,2021-05-05,"a\r\nb"',
        "6,15.02,52.36",  # too few, last line
    )
    intake = run(study_file(tmp_path))
    bad = ledger_rows(intake, "malformed_row")
    assert bad["row"].tolist() == [2, 3, 6]
    assert set(bad["status"]) == {"dropped"}
    assert bad["detail"].tolist() == [
        "expected 5 fields, found 6: 2,15.10,52.41,2021-05-02,theft,EXTRA",
        "expected 5 fields, found 4: 3,15.07,52.40,2021-05-03",
        "expected 5 fields, found 3: 6,15.02,52.36",
    ]
    assert intake.ledger.totals()["incidents"] == {"read": 6, "used": 3, "dropped": 3}
    assert intake.incidents["row"].tolist() == [1, 4, 5]
    assert intake.incidents["category"].tolist() == ["theft\nfrom a car", "robbery", "a\r\nb"]


def test_crlf_line_ends_and_a_short_last_line_without_newline(tmp_path):
    text = "\r\n".join([HEADER, *good_rows(3), "4,15.07,52.40"])  # no final line end
    write_bytes(tmp_path / "incidents.csv", text.encode())
    intake = run(study_file(tmp_path))
    assert entries(intake) == [(4, "dropped", "malformed_row")]
    assert intake.incidents["category"].tolist() == ["theft"] * 3  # no stray \r


def test_semicolon_file_is_detected(tmp_path):
    incidents_csv(tmp_path, *(r.replace(",", ";") for r in good_rows(3)), header=HEADER.replace(",", ";"))
    intake = run(study_file(tmp_path))
    assert entries(intake) == []
    assert intake.incidents["lon"].tolist() == [15.03, 15.10, 15.07]


def test_declared_wrong_delimiter_says_no_coordinate_columns_and_lists_columns(tmp_path):
    incidents_csv(tmp_path, *(r.replace(",", ";") for r in good_rows(3)), header=HEADER.replace(",", ";"))
    study = study_file(tmp_path, incidents='path = "incidents.csv"\ndelimiter = ","')
    assert_error(InputFileError, study, "incidents.csv: no coordinate columns found", "delimiter ','",
                 "columns: id;lon;lat;date;category")


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    # 'lon' is the first column: with the BOM left in, it would be '\ufefflon' and not be found
    rows = [f"{lon},{lat},2021-05-0{i},Köln" for i, (lon, lat) in enumerate([(15.03, 52.38), (15.10, 52.41)], 1)]
    write_bytes(tmp_path / "incidents.csv", b"\xef\xbb\xbf" + "\n".join(["lon,lat,date,category", *rows]).encode())
    intake = run(study_file(tmp_path))
    assert entries(intake) == []
    assert intake.incidents["category"].tolist() == ["Köln", "Köln"]


def test_latin1_file_is_read_with_a_note_and_names_decoded_right(tmp_path):
    rows = [r + ",Köln" for r in good_rows(2)] + [r + ",Düsseldorf" for r in good_rows(1)]
    incidents_csv(tmp_path, *rows, header=HEADER + ",Straße", encoding="latin-1")
    intake = run(study_file(tmp_path, incidents='path = "incidents.csv"\nid = "Straße"'))
    note = ledger_rows(intake, "encoding")
    assert note[["row", "status"]].values.tolist() == [[0, "note"]]
    assert note["detail"][0].startswith("not valid UTF-8 (first bad byte on line 1)")
    assert intake.incidents["record_id"].tolist() == ["Köln", "Köln", "Düsseldorf"]


@pytest.mark.parametrize("bom, encoding", [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")],
                         ids=["little-endian", "big-endian"])
def test_utf16_with_bom_is_converted(tmp_path, bom, encoding):
    text = "\r\n".join([HEADER, *good_rows(3, category="Straße")]) + "\r\n"  # as Excel's "Unicode text"
    write_bytes(tmp_path / "incidents.csv", bom + text.encode(encoding))
    intake = run(study_file(tmp_path))
    note = ledger_rows(intake, "encoding")
    assert note[["row", "status", "detail"]].values.tolist() == [
        [0, "note", "UTF-16 text with a byte-order mark, converted to UTF-8"]]
    assert intake.incidents["category"].tolist() == ["Straße"] * 3
    assert intake.incidents["lat"].tolist() == [52.38, 52.41, 52.40]


@pytest.mark.parametrize("data", [b"", b"\n \n\t\n"], ids=["zero-bytes", "blank-lines"])
def test_empty_file(tmp_path, data):
    write_bytes(tmp_path / "incidents.csv", data)
    assert_error(InputFileError, study_file(tmp_path), "incidents.csv: the file is empty")


def test_header_only(tmp_path):
    incidents_csv(tmp_path)
    assert_error(InputFileError, study_file(tmp_path), "incidents.csv: the file has a header but no data rows")


def test_one_10_mb_line(tmp_path):
    huge = "x" * (10 * 1024 * 1024)
    incidents_csv(tmp_path, *good_rows(2), f"3,15.07,52.40,2021-05-03,{huge}", "4,15.12,52.43,2021-05-04,theft")
    intake = run(study_file(tmp_path))
    assert entries(intake) == []
    assert intake.incidents["row"].tolist() == [1, 2, 3, 4]
    assert intake.incidents["category"].str.len().tolist() == [5, 5, 10 * 1024 * 1024, 5]


def test_quoted_newlines_and_delimiters_stay_inside_their_value(tmp_path):
    incidents_csv(
        tmp_path,
        # the second line holds as many commas as a record: still one well-formed value
        '1,15.03,52.38,2021-05-01,"Hauptstraße 1\nHinterhof, links, 2. OG, Tür 3, bei Müller"',
        '2,15.10,52.41,2021-05-02,"say ""hello"",\nthen leave"',
        "3,15.07,52.40,2021-05-03,theft",
    )
    intake = run(study_file(tmp_path))
    assert entries(intake) == []
    assert intake.incidents["row"].tolist() == [1, 2, 3]
    assert intake.incidents["category"].tolist() == [
        "Hauptstraße 1\nHinterhof, links, 2. OG, Tür 3, bei Müller", 'say "hello",\nthen leave', "theft"]


@pytest.mark.parametrize("after", [[], ['6,15.07,52.40,2021-05-06,"robbery"']], ids=["to-the-end", "until-a-later-quote"])
def test_unclosed_quote_that_swallows_records_is_refused_naming_the_row(tmp_path, after):
    incidents_csv(tmp_path, *good_rows(2), '3,15.07,52.40,2021-05-03,"theft', *good_rows(2), *after)
    assert_error(InputFileError, study_file(tmp_path), "incidents.csv:3, column 'category'", "never closed")


def test_gzip_that_is_not_gzip(tmp_path):
    incidents_csv(tmp_path, *good_rows(3), name="incidents.csv.gz")
    study = study_file(tmp_path, incidents='path = "incidents.csv.gz"')
    assert_error(InputFileError, study, "incidents.csv.gz: the file ends with .gz but is not valid gzip",
                 "rename it without .gz")


def test_real_gzip_is_read(tmp_path):
    text = "\n".join([HEADER, *good_rows(3)]) + "\n"
    write_bytes(tmp_path / "incidents.csv.gz", gzip.compress(text.encode(), mtime=0))
    intake = run(study_file(tmp_path, incidents='path = "incidents.csv.gz"'))
    assert intake.ledger.totals()["incidents"] == {"read": 3, "used": 3, "dropped": 0}


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 8, "export the table as CSV"),
        ("\n".join([HEADER, *good_rows(3)]).encode("utf-16-le"), 'encoding = "utf-16-le"'),
    ],
    ids=["zip-bytes", "utf16-without-bom"],
)
def test_binary_file_with_nul_bytes_named_csv(tmp_path, data, fragment):
    write_bytes(tmp_path / "incidents.csv", data)
    assert_error(InputFileError, study_file(tmp_path), "incidents.csv: looks like a binary file", fragment)


def test_duplicate_header_names(tmp_path):
    incidents_csv(tmp_path, *(r + ",52.0" for r in good_rows(3)), header=HEADER + ",lat")
    assert_error(InputFileError, study_file(tmp_path), "incidents.csv:header: the header names column 'lat' more than once")


def test_decimal_commas_in_a_semicolon_file(tmp_path):
    incidents_csv(tmp_path, "1;15,03;52,38;2021-05-01;theft", "2;15;52,41;2021-05-02;theft", "3;abc;52,4;2021-05-03;theft",
                  header=HEADER.replace(",", ";"))
    intake = run(study_file(tmp_path))
    notes = ledger_rows(intake, "decimal_comma")
    assert notes["detail"].tolist() == ["column 'lon' uses decimal commas; read as decimals",
                                        "column 'lat' uses decimal commas; read as decimals"]
    assert entries(intake) == [(0, "note", "decimal_comma"), (0, "note", "decimal_comma"),
                               (3, "dropped", "coordinate_not_numeric")]
    assert intake.incidents["lon"].tolist() == [15.03, 15.0]
    assert intake.incidents["lat"].tolist() == [52.38, 52.41]


def test_a_file_mixing_utf8_and_cp1252_lines_decodes_each_line(tmp_path):
    """Montreal police (SPVM, "Actes criminels", CC BY 4.0) category labels, as a file appended to by
    two systems holds them: UTF-8 rows and one row written as cp1252. Read whole as cp1252 (the old
    fallback) the UTF-8 "Méfait" would become "MÃ©fait" and split the category in two."""
    labels = ["Méfait", "Vols qualifiés", "Vol de véhicule à moteur", "Méfait"]
    rows = [r.rsplit(",", 1)[0] + "," + c for r, c in zip(good_rows(4), labels)]  # good_rows end with a category
    lines = [HEADER.encode()] + [r.encode("utf-8") for r in rows[:3]] + [rows[3].encode("cp1252")]
    write_bytes(tmp_path / "incidents.csv", b"\n".join(lines) + b"\n")
    intake = run(study_file(tmp_path))

    def by_hand(line: bytes) -> str:  # the independent reading: each line on its own
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            return line.decode("cp1252")

    expected = [by_hand(line).rsplit(",", 1)[1] for line in lines[1:]]
    assert expected == labels
    assert intake.incidents["category"].tolist() == labels
    assert intake.incidents["category"].value_counts()["Méfait"] == 2
    note = ledger_rows(intake, "encoding")
    assert note["detail"].tolist() == ["not valid UTF-8 (first bad byte on line 5); 1 of 5 lines read as cp1252, "
                                       "the others as UTF-8"]
