// tests/fuzz/fuzz_tsv.cpp — the TSV reader of the text classifier (corpus.h: parse_tsv,
// read_labeled_file; io.h: read_file, for_each_line) on arbitrary bytes.
//
// Properties: read_file returns the file's bytes exactly; read_labeled_file on a file and
// parse_tsv on the same bytes agree; the rows are in line order with a non-empty label free of
// TABs and no newline in any field; make_labeled_data builds a consistent dataset from them
// (labelled_data_checks.h).
#include "examples/text_classifier/corpus.h"
#include "examples/text_classifier/io.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/labeled_data_checks.h"

namespace {

using namespace minidl::fuzz;

int fuzz_tsv(const uint8_t* data, size_t size) {
    static MemFile file;
    file.assign(data, size);
    const std::string_view text = as_text(data, size);
    FUZZ_EXPECT(textclf::read_file(file.path()) == text, "read_file returned other bytes");

    std::vector<textclf::LabeledRow> rows, from_file;
    std::string error, file_error;
    const bool ok = accepts([&] { rows = textclf::parse_tsv(text, "input.tsv"); }, &error);
    const bool file_ok =
        accepts([&] { from_file = textclf::read_labeled_file(file.path()); }, &file_error);
    FUZZ_EXPECT(ok == file_ok, "parse_tsv and read_labeled_file disagree: ", error, " / ",
                file_error);
    if (!ok) return 0;
    FUZZ_EXPECT(rows.size() == from_file.size(), "parse_tsv and read_labeled_file disagree");
    for (size_t i = 0; i < rows.size(); ++i)
        FUZZ_EXPECT(rows[i].label == from_file[i].label && rows[i].text == from_file[i].text &&
                        rows[i].line == from_file[i].line,
                    "row ", i, " differs between parse_tsv and read_labeled_file");
    expect_valid_rows(rows, count_lines(text));
    for (const textclf::LabeledRow& r : rows)
        FUZZ_EXPECT(r.label.find_first_of("\t\n") == std::string::npos &&
                        r.text.find('\n') == std::string::npos,
                    "line ", r.line, ": a TAB in the label or a newline in a field");
    accepts([&] { expect_valid_dataset(rows); });
    return 0;
}

}  // namespace

MINIDL_FUZZ_TARGET("tsv", fuzz_tsv)
