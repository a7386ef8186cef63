#pragma once
const void *malv_mlaas_service_v1(void);
