# web2c.awk - turn the page's files (query/web/*.html, *.css, *.js) into
# the C table web_files[] of query/serve.h, so `clipdex serve` carries its
# page and works offline.  index.html is served as "/".
# Usage: awk -f query/web/web2c.awk query/web/index.html ... > web.c
function flush() {
    if (name == "") return
    printf "    {\"%s\", \"%s\",\n%s     \"\", %d},\n", url, type, body, len
}
BEGIN {
    print "/* Generated from query/web/ by query/web/web2c.awk: do not edit. */"
    print "#include \"serve.h\""
    print "const web_file web_files[] = {"
    name = ""
}
FNR == 1 {
    flush()
    name = FILENAME; sub(/.*\//, "", name)
    url = name == "index.html" ? "/" : "/" name
    type = "application/octet-stream"
    if (name ~ /\.html$/) type = "text/html; charset=utf-8"
    else if (name ~ /\.css$/) type = "text/css; charset=utf-8"
    else if (name ~ /\.js$/) type = "text/javascript; charset=utf-8"
    body = ""; len = 0
}
{
    # escaped by hand: a backslash in a gsub replacement means different
    # things to different awks
    n = length($0); line = ""
    for (i = 1; i <= n; i++) {
        c = substr($0, i, 1)
        if (c == "\\") line = line "\\\\"
        else if (c == "\"") line = line "\\\""
        else if (c == "?") line = line "\\?"     # no trigraphs
        else line = line c
    }
    len += n + 1
    body = body "     \"" line "\\n\"\n"
}
END {
    flush()
    print "    {0, 0, 0, 0},"
    print "};"
}
