/* A shared library that is deliberately NOT an MLaaS service: it exports a function, but not
 * malv_mlaas_service_v1. Loading it must fail with "not an MLaaS service" (Tests/MLaaSTests). */
int mlaas_fixture_answer(void) { return 42; }
