// DatabaseMetaData as GUI tools (DBeaver, DataGrip) call it, printed as JSON for tests/e2e/test_jdbc.py.
// Run as a single-file program: java -cp postgresql.jar Metadata.java URL USER PASSWORD TABLE...
import java.sql.*;
import java.util.*;

public class Metadata {
    static StringBuilder out = new StringBuilder();

    static String quote(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static String value(Object v) {
        if (v == null) return "null";
        if (v instanceof Number || v instanceof Boolean) return v.toString();
        return quote(v.toString());
    }

    // the named columns of every row, as a JSON list of objects
    static String rows(ResultSet rs, String... columns) throws SQLException {
        List<String> items = new ArrayList<>();
        while (rs.next()) {
            List<String> fields = new ArrayList<>();
            for (String c : columns) fields.add(quote(c) + ": " + value(rs.getObject(c)));
            items.add("{" + String.join(", ", fields) + "}");
        }
        rs.close();
        return "[" + String.join(", ", items) + "]";
    }

    static void field(String name, String json) {
        if (out.length() > 1) out.append(",\n");
        out.append(quote(name)).append(": ").append(json);
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        String[] tables = Arrays.copyOfRange(args, 3, args.length);
        out.append("{");
        try (Connection conn = DriverManager.getConnection(url, args[1], args[2])) {
            DatabaseMetaData md = conn.getMetaData();
            field("product", quote(md.getDatabaseProductName()));
            field("product_version", quote(md.getDatabaseProductVersion()));
            field("major", String.valueOf(md.getDatabaseMajorVersion()));
            field("user", quote(md.getUserName()));
            field("catalogs", rows(md.getCatalogs(), "TABLE_CAT"));
            field("schemas", rows(md.getSchemas(), "TABLE_SCHEM", "TABLE_CATALOG"));
            field("table_types", rows(md.getTableTypes(), "TABLE_TYPE"));
            field("tables", rows(md.getTables(null, "public", "%", null),
                    "TABLE_CAT", "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE", "REMARKS"));
            field("system_tables", String.valueOf(countRows(md.getTables(null, "pg_catalog", "pg_class", null))));
            for (String table : tables) {
                field("columns:" + table, rows(md.getColumns(null, "public", table, "%"),
                        "COLUMN_NAME", "DATA_TYPE", "TYPE_NAME", "COLUMN_SIZE", "DECIMAL_DIGITS", "NULLABLE",
                        "IS_NULLABLE", "COLUMN_DEF", "ORDINAL_POSITION", "IS_AUTOINCREMENT"));
                field("primary_keys:" + table, rows(md.getPrimaryKeys(null, "public", table),
                        "COLUMN_NAME", "KEY_SEQ", "PK_NAME"));
                field("indexes:" + table, rows(md.getIndexInfo(null, "public", table, false, false),
                        "INDEX_NAME", "NON_UNIQUE", "ORDINAL_POSITION", "COLUMN_NAME", "ASC_OR_DESC"));
                field("imported_keys:" + table, rows(md.getImportedKeys(null, "public", table),
                        "PKTABLE_NAME", "PKCOLUMN_NAME", "FKTABLE_NAME", "FKCOLUMN_NAME", "KEY_SEQ",
                        "UPDATE_RULE", "DELETE_RULE", "FK_NAME", "PK_NAME", "DEFERRABILITY"));
                field("exported_keys:" + table, rows(md.getExportedKeys(null, "public", table),
                        "PKTABLE_NAME", "PKCOLUMN_NAME", "FKTABLE_NAME", "FKCOLUMN_NAME", "KEY_SEQ",
                        "UPDATE_RULE", "DELETE_RULE", "FK_NAME"));
            }
            field("type_info", rows(md.getTypeInfo(), "TYPE_NAME", "DATA_TYPE"));
            field("procedures", String.valueOf(countRows(md.getProcedures(null, "public", "%"))));
            field("functions", String.valueOf(countRows(md.getFunctions(null, "public", "%"))));

            conn.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
            field("isolation_serializable", String.valueOf(conn.getTransactionIsolation()));
            conn.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
            field("isolation_read_committed", String.valueOf(conn.getTransactionIsolation()));
            conn.setAutoCommit(false);
            conn.setReadOnly(true);
            try (Statement st = conn.createStatement()) {
                field("read_only_read", value(scalar(st, "SELECT count(*) FROM " + tables[0])));
                try {
                    st.executeUpdate("DELETE FROM " + tables[0]);
                    field("read_only_write", quote("allowed"));
                } catch (SQLException e) {
                    field("read_only_write", quote(e.getSQLState()));
                }
            }
            conn.rollback();
            conn.setReadOnly(false);
            conn.setAutoCommit(true);

            try (Statement st = conn.createStatement()) {
                field("current_schemas", value(scalar(st, "SELECT array_to_string(current_schemas(true), ',')")));
                field("in_recovery", value(scalar(st, "SELECT pg_is_in_recovery()")));
                Object pid = scalar(st, "SELECT pg_backend_pid()");
                field("backend_pid_stable", String.valueOf(pid != null && pid.equals(scalar(st, "SELECT pg_backend_pid()"))));
                field("backend_pid_in_activity", value(scalar(st,
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid() AND state = 'active'")));
                field("settings", rows(st.executeQuery(
                        "SELECT name, setting, vartype FROM pg_settings "
                        + "WHERE name IN ('server_version_num', 'standard_conforming_strings', 'max_identifier_length') "
                        + "ORDER BY name"), "name", "setting", "vartype"));
            }
        }
        out.append("}");
        System.out.println(out);
    }

    static int countRows(ResultSet rs) throws SQLException {
        int n = 0;
        while (rs.next()) n++;
        rs.close();
        return n;
    }

    static Object scalar(Statement st, String sql) throws SQLException {
        try (ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getObject(1);
        }
    }
}
