/**
 * What `import ... from "libretto"` gives a workflow file. At run time the
 * module is served by a Bun plugin (load.ts); tsconfig maps the name here so
 * workflow files typecheck too.
 */
export { workflow } from "./define";
export type { WorkflowContext, WorkflowDefinition, WorkflowHandler, WorkflowOptions } from "./define";
