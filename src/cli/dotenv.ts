export interface ParsedDotenv {
  /** Variables by name; a name given twice keeps its last value. */
  values: Record<string, string>;
  /** 1-based numbers of lines that are not `KEY=VALUE` (ignored; their text is not kept, it may hold a secret). */
  invalidLines: number[];
}

const ASSIGNMENT = /^[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*=[ \t]*/;
const DOUBLE_QUOTE_ESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t", '"': '"', "\\": "\\" };

/**
 * Parses a `.env` file, the common subset: `KEY=VALUE` lines, an optional
 * `export ` prefix, `#` comments (whole line, or after whitespace in an
 * unquoted value), 'single quotes' taken literally, "double quotes" with
 * \n \r \t \" \\ escapes. Quoted values may span lines. No variable expansion.
 */
export function parseDotenv(text: string): ParsedDotenv {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  const values = new Map<string, string>();
  const invalidLines: number[] = [];
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const assignment = ASSIGNMENT.exec(line);
    if (!assignment) {
      invalidLines.push(index + 1);
      continue;
    }
    const name = assignment[1]!;
    const rest = line.slice(assignment[0].length);
    const quote = rest[0];
    if (quote === '"' || quote === "'") {
      const quoted = readQuoted(lines, index, assignment[0].length, quote);
      if (!quoted) {
        invalidLines.push(index + 1);
        continue;
      }
      values.set(name, quoted.value);
      index = quoted.lastLine;
      continue;
    }
    values.set(name, rest.replace(/(^|[ \t])#.*$/, "").trim());
  }
  return { values: Object.fromEntries(values), invalidLines };
}

/** Reads a quoted value that opens at lines[first][column]; undefined when it never closes. */
function readQuoted(lines: readonly string[], first: number, column: number, quote: '"' | "'"): { value: string; lastLine: number } | undefined {
  let value = "";
  let position = column + 1;
  for (let index = first; index < lines.length; index++, position = 0) {
    const line = lines[index]!;
    while (position < line.length) {
      const char = line[position]!;
      if (char === quote) {
        // Anything after the closing quote other than a comment is ignored.
        return { value, lastLine: index };
      }
      if (quote === '"' && char === "\\" && position + 1 < line.length) {
        const escaped = line[position + 1]!;
        value += DOUBLE_QUOTE_ESCAPES[escaped] ?? `\\${escaped}`;
        position += 2;
        continue;
      }
      value += char;
      position++;
    }
    value += "\n";
  }
  return undefined;
}
