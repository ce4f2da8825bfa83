"""The destructive-migration scanner, on a corpus of real-looking Laravel migrations."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgdeploy.checks.migrations import (
    DESTRUCTIVE_METHODS,
    REVIEW_METHODS,
    Finding,
    MigrationScan,
    format_scan,
    migration_name,
    pending_migrations,
    scan_files,
    scan_source,
)

CORPUS = Path(__file__).parent / "migration_corpus"

# file stem -> (verdict, the calls found in up()). Verdicts: safe, destructive, review, allowed.
EXPECTED: dict[str, tuple[str, set[str]]] = {
    # Safe, additive, with "drop", "rename", braces and quotes in strings and comments, and
    # destructive calls in down() only.
    "2025_06_01_000000_create_visa_applications_table": ("safe", set()),
    "2025_06_02_000000_add_whatsapp_to_users_table": ("safe", set()),
    "2025_06_03_000000_add_status_index_to_visa_applications": ("safe", set()),
    "2025_06_04_000000_create_payments_table": ("safe", set()),
    "2025_06_05_000000_seed_feature_settings": ("safe", set()),
    "2025_06_06_000000_add_attachments_to_documents": ("safe", set()),
    "2025_06_07_000000_create_embassies_table": ("safe", set()),
    # Destructive.
    "2025_07_01_000001_drop_passport_no_from_users_table": ("destructive", {"dropColumn"}),
    "2025_07_01_000002_drop_legacy_columns_from_visa_applications": (
        "destructive",
        {"dropColumn"},
    ),
    "2025_07_02_000000_remove_fax_columns_from_agencies": (
        "destructive",
        {"Schema::dropColumns"},
    ),
    "2025_07_03_000000_drop_old_payments_table": ("destructive", {"Schema::drop"}),
    "2025_07_04_000000_drop_temp_imports_table": ("destructive", {"Schema::dropIfExists"}),
    "2025_07_05_000000_drop_reporting_daily_stats": ("destructive", {"drop"}),
    "2025_07_06_000000_drop_archive_tables_via_blueprint": (
        "destructive",
        {"drop", "dropIfExists"},
    ),
    "2025_07_07_000000_drop_agency_foreign_keys_from_applications": (
        "destructive",
        {"dropForeign", "dropConstrainedForeignId"},
    ),
    "2025_07_08_000000_drop_indexes_from_payments": (
        "destructive",
        {"dropIndex", "dropUnique", "dropPrimary"},
    ),
    "2025_07_09_000000_drop_attachable_morphs_from_documents": ("destructive", {"dropMorphs"}),
    "2025_07_10_000000_drop_timestamps_from_country_codes": (
        "destructive",
        {"dropTimestamps", "dropTimestampsTz"},
    ),
    "2025_07_11_000000_drop_soft_deletes_from_notifications": (
        "destructive",
        {"dropSoftDeletes", "dropSoftDeletesTz"},
    ),
    "2025_07_12_000000_drop_remember_token_from_api_clients": (
        "destructive",
        {"dropRememberToken"},
    ),
    "2025_07_13_000000_drop_agency_from_invoices": ("destructive", {"dropForeignIdFor"}),
    "2025_07_14_000000_drop_search_indexes_from_visa_guides": (
        "destructive",
        {"dropFullText", "dropSpatialIndex"},
    ),
    "2025_07_15_000000_rename_nid_on_users_table": ("destructive", {"renameColumn"}),
    "2025_07_16_000000_rename_jobs_to_overseas_jobs": ("destructive", {"Schema::rename"}),
    "2025_07_17_000000_rename_travel_table_via_blueprint": ("destructive", {"rename"}),
    "2025_07_18_000000_rename_status_index_on_applications": ("destructive", {"renameIndex"}),
    "2025_07_19_000000_shorten_passport_number_column": ("destructive", {"change"}),
    "2025_07_20_000000_reset_sandbox_database": (
        "destructive",
        {"dropAllTables", "dropAllViews", "dropAllTypes"},
    ),
    # Raw SQL and data removal: review, or destructive when the SQL visibly drops.
    "2025_08_01_000000_add_concurrent_index_on_payments": ("review", {"DB::statement"}),
    "2025_08_02_000000_create_application_search_function": ("review", {"DB::unprepared"}),
    "2025_08_03_000000_drop_fax_with_raw_sql": ("destructive", {"DB::statement"}),
    "2025_08_04_000000_purge_expired_sessions": ("review", {"truncate", "delete"}),
    # The escape hatch: with a reason it is reviewed; without one, or inside a string, it is not.
    "2025_09_01_000000_drop_passport_scan_path_reviewed": ("allowed", {"dropColumn"}),
    "2025_09_02_000000_drop_referral_code_no_reason": ("destructive", {"dropColumn"}),
    "2025_09_03_000000_drop_promo_code_hatch_in_string": ("destructive", {"dropColumn"}),
    "2025_09_04_000000_rename_and_raw_sql_reviewed": (
        "allowed",
        {"renameColumn", "DB::statement"},
    ),
}


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.php"))


def test_the_corpus_and_the_table_agree():
    assert len(corpus_files()) >= 24
    assert {path.stem for path in corpus_files()} == set(EXPECTED)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_corpus_verdicts(stem):
    verdict, calls = EXPECTED[stem]
    path = CORPUS / f"{stem}.php"
    scan = scan_source(path.read_text(), path.name)
    assert scan.verdict == verdict, format_scan(scan)
    assert {finding.call for finding in scan.findings} == calls, format_scan(scan)
    assert scan.blocking == (verdict in {"destructive", "review"})
    if verdict == "safe":
        assert not scan.destructive and not scan.needs_review
    elif verdict == "review":
        assert scan.needs_review and not scan.destructive


def test_every_listed_method_is_in_the_corpus():
    found = {
        finding.call.split("::")[-1]
        for scan in scan_files(corpus_files())
        for finding in scan.findings
    }
    must_cover = (DESTRUCTIVE_METHODS | REVIEW_METHODS) - {
        "dropDatetimes",
        "dropConstrainedForeignIdFor",
        "dropDatabaseIfExists",
    }
    assert must_cover <= found, must_cover - found


def test_findings_carry_line_kind_and_text():
    path = CORPUS / "2025_07_08_000000_drop_indexes_from_payments.php"
    scan = scan_source(path.read_text(), path.name)
    assert scan.findings == (
        Finding("destructive", "dropIndex", 16, "$table->dropIndex('payments_status_index')"),
        Finding("destructive", "dropUnique", 17, "$table->dropUnique(['transaction_id'])"),
        Finding("destructive", "dropPrimary", 18, "$table->dropPrimary('payments_pkey')"),
    )
    assert format_scan(scan).splitlines()[0] == (
        "2025_07_08_000000_drop_indexes_from_payments.php:16 "
        "$table->dropIndex('payments_status_index') — destructive"
    )


def test_the_reviewed_escape_hatch_keeps_findings_and_gives_the_reason():
    path = CORPUS / "2025_09_01_000000_drop_passport_scan_path_reviewed.php"
    scan = scan_source(path.read_text(), path.name)
    assert scan.allowed
    assert not scan.blocking
    assert scan.destructive
    assert scan.allowed_reason == (
        "passport_scan_path unused since v3.2 (PR #981), snapshot verified"
    )
    assert "reviewed (bgdeploy: allow-destructive): passport_scan_path unused" in format_scan(scan)


def test_a_hatch_without_a_reason_is_reported():
    path = CORPUS / "2025_09_02_000000_drop_referral_code_no_reason.php"
    scan = scan_source(path.read_text(), path.name)
    assert scan.blocking
    assert scan.allowed_reason is None
    assert len(scan.notes) == 1
    assert "has no reason" in scan.notes[0]
    assert "note: line 15:" in format_scan(scan)


def test_a_block_comment_hatch_drops_its_closing_marker():
    path = CORPUS / "2025_09_04_000000_rename_and_raw_sql_reviewed.php"
    scan = scan_source(path.read_text(), path.name)
    assert scan.allowed_reason == "the old name is only read by the v1 API, retired 2025-08"


def test_raw_sql_kinds():
    scan = scan_source(
        _migration(
            "DB::statement('CREATE INDEX users_email_idx ON users (email)');\n"
            "DB::statement('ALTER TABLE users ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES b (id)"
            " ON DELETE CASCADE');\n"
            "DB::statement('ALTER TABLE users ALTER COLUMN age TYPE smallint');\n"
            "DB::connection('pgsql')->unprepared('TRUNCATE audit_log');\n"
            "DB::statement('UPDATE users SET dropped_at = NULL');\n"
        ),
        "raw.php",
    )
    assert [(f.kind, f.call) for f in scan.findings] == [
        ("review", "DB::statement"),
        ("review", "DB::statement"),
        ("destructive", "DB::statement"),
        ("destructive", "unprepared"),
        ("review", "DB::statement"),
    ]


def test_only_up_counts_whatever_the_order_and_signature():
    down_first = (
        "<?php\nclass X extends Migration {\n"
        "    public function down() { Schema::drop('x'); }\n"
        "    public function up() { Schema::create('x', function ($t) { $t->id(); }); }\n}\n"
    )
    assert scan_source(down_first, "x.php").verdict == "safe"
    upper = "<?php\nreturn new class extends Migration {\n  PUBLIC FUNCTION UP() : VOID\n  {\n"
    upper += "    Schema::table('x', fn (Blueprint $t) => $t->DropColumn('y'));\n  }\n};\n"
    scan = scan_source(upper, "upper.php")
    assert [(f.call, f.line) for f in scan.findings] == [("dropColumn", 5)]


def test_strings_comments_and_heredocs_do_not_end_up_early():
    source = _migration(
        "$table->string('a')->default('}'); // }\n"
        '$table->string("b")->default("{$x} \\" }"); # }\n'
        "/* } */ $table->string('c')->comment(<<<TXT\n  } } }\n  TXT);\n"
        "$table->dropColumn('d');\n"
    )
    scan = scan_source(source, "tricky.php")
    assert [finding.call for finding in scan.findings] == ["dropColumn"]


def test_fully_qualified_facades_and_static_receivers():
    scan = scan_source(
        _migration("\\Illuminate\\Support\\Facades\\Schema::dropIfExists('legacy');"),
        "fq.php",
    )
    assert [f.call for f in scan.findings] == ["Schema::dropIfExists"]
    assert scan.findings[0].text == "\\Illuminate\\Support\\Facades\\Schema::dropIfExists('legacy')"


def test_an_unfinished_up_is_scanned_to_the_end_and_flagged_for_review():
    source = "<?php\nreturn new class extends Migration {\n    public function up(): void {\n"
    source += "        Schema::table('x', function ($t) {\n            $t->string('y');\n"
    scan = scan_source(source, "broken.php")
    assert scan.blocking
    assert [f.call for f in scan.findings] == ["up()"]
    assert "could not find the end of up()" in scan.findings[0].text


def test_a_file_without_up_is_safe_with_a_note():
    scan = scan_source("<?php\n// nothing here\n", "empty.php")
    assert scan.verdict == "safe"
    assert scan.notes == ("no up() method found",)
    assert format_scan(scan).startswith("empty.php: safe")


def test_long_statements_are_shortened_around_the_call():
    long_chain = "$table->string('x')" + "->comment('a fairly long comment here')" * 4
    scan = scan_source(_migration(long_chain + "->change();"), "long.php")
    assert len(scan.findings[0].text) <= 100
    assert scan.findings[0].text == "…->change()"


def test_to_dict_is_json_ready():
    scan = scan_source(_migration("$table->dropColumn('x');"), "d.php")
    assert scan.to_dict() == {
        "name": "d.php",
        "verdict": "destructive",
        "blocking": True,
        "allowed_reason": None,
        "findings": [
            {
                "kind": "destructive",
                "call": "dropColumn",
                "line": 4,
                "text": "$table->dropColumn('x')",
            }
        ],
        "notes": [],
    }


def test_scan_files_keeps_order_and_names():
    paths = corpus_files()[:3]
    assert [scan.name for scan in scan_files(paths)] == [path.name for path in paths]
    assert isinstance(scan_files([str(paths[0])])[0], MigrationScan)


# Pending migrations


def test_pending_migrations_in_laravel_order():
    files = [
        "database/migrations/2025_07_01_000000_drop_passport_no.php",
        "2025_06_01_000000_create_visa_applications_table.php",
        "2024_12_31_235959_create_users_table",
        "2025_06_01_000000_create_visa_applications_table",
        "2025_06_01_000001_add_status_to_visa_applications.php",
    ]
    applied = ["2024_12_31_235959_create_users_table"]
    assert pending_migrations(files, applied) == [
        "2025_06_01_000000_create_visa_applications_table",
        "2025_06_01_000001_add_status_to_visa_applications",
        "2025_07_01_000000_drop_passport_no",
    ]
    assert pending_migrations(files, [migration_name(f) for f in files]) == []


def test_migration_name():
    assert migration_name("/srv/app/database/migrations/2025_x.php") == "2025_x"
    assert migration_name("2025_x") == "2025_x"


def _migration(up_body: str) -> str:
    indented = "".join(f"        {line}\n" for line in up_body.splitlines())
    return (
        "<?php\nreturn new class extends Migration {\n    public function up(): void {\n"
        + indented
        + "    }\n\n    public function down(): void {}\n};\n"
    )
