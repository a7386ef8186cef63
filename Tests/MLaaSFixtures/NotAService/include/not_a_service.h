#pragma once
int mlaas_fixture_answer(void);
