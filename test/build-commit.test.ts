import { afterAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { commitFromGitDir } from "../scripts/build";
import { tempDir } from "./helpers";

// The Docker build has no git binary, only the .git directory's HEAD and refs
// (.dockerignore lets those in): the commit stamped into `understudy version`
// is read from those files. Before, the slim image printed "(unknown)".

const dirs: { remove(): void }[] = [];
afterAll(() => dirs.forEach((d) => d.remove()));

function git(cwd: string, ...args: string[]): string {
  const result = Bun.spawnSync(["git", ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.invalid", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.invalid", HOME: cwd },
  });
  if (result.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${result.stderr.toString()}`);
  return result.stdout.toString().trim();
}

test.skipIf(!Bun.which("git"))("HEAD's commit is read from .git without git: a loose ref, a packed ref, a detached HEAD", () => {
  const repo = tempDir("understudy-gitdir-");
  dirs.push(repo);
  git(repo.path, "init", "-q", "-b", "main");
  writeFileSync(join(repo.path, "a.txt"), "a\n");
  git(repo.path, "add", "a.txt");
  git(repo.path, "commit", "-q", "-m", "first");
  const gitDir = join(repo.path, ".git");
  expect(commitFromGitDir(gitDir)).toBe(git(repo.path, "rev-parse", "HEAD"));

  git(repo.path, "pack-refs", "--all");
  expect(commitFromGitDir(gitDir)).toBe(git(repo.path, "rev-parse", "HEAD"));

  writeFileSync(join(repo.path, "b.txt"), "b\n");
  git(repo.path, "add", "b.txt");
  git(repo.path, "commit", "-q", "-m", "second");
  git(repo.path, "checkout", "-q", "--detach", "HEAD~1");
  expect(commitFromGitDir(gitDir)).toBe(git(repo.path, "rev-parse", "HEAD"));
});

test("no .git, or a worktree's .git file, gives no commit", () => {
  const dir = tempDir("understudy-gitdir-");
  dirs.push(dir);
  expect(commitFromGitDir(join(dir.path, ".git"))).toBeUndefined();
  writeFileSync(join(dir.path, ".git"), "gitdir: /somewhere/else/.git/worktrees/x\n");
  expect(commitFromGitDir(join(dir.path, ".git"))).toBeUndefined();
});
