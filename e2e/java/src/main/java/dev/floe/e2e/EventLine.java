package dev.floe.e2e;

import java.util.Map;

/**
 * The JSON event lines the transactional and KIP-848 drivers print on stdout: one object per line,
 * {@code {"event":name,...}}, just enough JSON for their fields (null, strings, numbers, booleans,
 * lists and maps in iteration order), with everything outside printable ASCII escaped.
 */
final class EventLine {
    private EventLine() {
    }

    /** Prints {@code {"event":name,...}} with the given field names and values, alternating. */
    static synchronized void event(String name, Object... fields) {
        StringBuilder line = new StringBuilder(128).append("{\"event\":");
        json(line, name);
        for (int k = 0; k < fields.length; k += 2) {
            line.append(',');
            json(line, fields[k]);
            line.append(':');
            json(line, fields[k + 1]);
        }
        line.append('}');
        System.out.println(line);
        System.out.flush();
    }

    /** Just enough JSON: null, strings, numbers, booleans, lists and maps (in their iteration order). */
    static void json(StringBuilder out, Object value) {
        if (value == null) {
            out.append("null");
        } else if (value instanceof Number || value instanceof Boolean) {
            out.append(value);
        } else if (value instanceof Map<?, ?> map) {
            out.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> entry : map.entrySet()) {
                if (!first) {
                    out.append(',');
                }
                first = false;
                json(out, String.valueOf(entry.getKey()));
                out.append(':');
                json(out, entry.getValue());
            }
            out.append('}');
        } else if (value instanceof Iterable<?> list) {
            out.append('[');
            boolean first = true;
            for (Object item : list) {
                if (!first) {
                    out.append(',');
                }
                first = false;
                json(out, item);
            }
            out.append(']');
        } else {
            String text = value.toString();
            out.append('"');
            for (int k = 0; k < text.length(); k++) {
                char c = text.charAt(k);
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    default -> {
                        // Everything outside printable ASCII is escaped, so stdout's charset never matters.
                        if (c < 0x20 || c > 0x7e) {
                            out.append(String.format("\\u%04x", (int) c));
                        } else {
                            out.append(c);
                        }
                    }
                }
            }
            out.append('"');
        }
    }
}
