import type { RouteDef } from "../http/route";

/** schedules/create|list|get|update|delete|trigger. TODO(schedules issue). */
export const scheduleRoutes: RouteDef[] = [];
