# sql2c.awk - turn schema/NNN_name.sql files into the C table of schema
# steps (core/store/store_internal.h: cdx_schema_steps), so the SQL is built
# into the binaries.  Usage: awk -f schema/sql2c.awk schema/*.sql > schema.c
# Files must be numbered 1, 2, 3 ... without gaps, in the order given.
function flush() {
    if (name == "") return
    printf "    {%d, \"%s\",\n%s    },\n", ver, name, body
}
BEGIN {
    print "/* Generated from schema/NNN_name.sql by schema/sql2c.awk: do not edit. */"
    print "#include \"store/store_internal.h\""
    print "const cdx_schema_step cdx_schema_steps[] = {"
    n = 0; name = ""
}
FNR == 1 {
    flush()
    name = FILENAME; sub(/.*\//, "", name)
    if (name !~ /^[0-9]+_[A-Za-z0-9_]+\.sql$/) {
        print "sql2c: bad schema file name " name > "/dev/stderr"; exit 1
    }
    ver = name; sub(/_.*/, "", ver); ver = ver + 0
    n++
    if (ver != n) { print "sql2c: " name ": expected version " n > "/dev/stderr"; exit 1 }
    body = ""
}
{
    line = $0
    gsub(/\\/, "\\\\", line); gsub(/"/, "\\\"", line)
    body = body "     \"" line "\\n\"\n"
}
END {
    flush()
    print "};"
    print "const int cdx_schema_n_steps = " n ";"
}
