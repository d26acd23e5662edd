package org.dipro.hapi;

import ca.uhn.fhir.batch2.api.IJobMaintenanceService;
import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.binary.api.IBinaryStorageSvc;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.IncomingRequestAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import javax.sql.DataSource;
import org.springframework.beans.factory.InitializingBean;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.autoconfigure.orm.jpa.JpaProperties;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/** The beans HAPI's JPA configuration expects the application to provide. */
@Configuration
@EnableConfigurationProperties(HapiFhirProperties.class)
@Import(ThreadPoolFactoryConfig.class)
public class FhirServerConfig {

	@Bean
	public JpaStorageSettings jpaStorageSettings(HapiFhirProperties properties) {
		JpaStorageSettings settings = new JpaStorageSettings();
		settings.setResourceClientIdStrategy(properties.clientIdStrategy());
		settings.setExpungeEnabled(properties.expungeEnabled());
		settings.setAllowMultipleDelete(properties.allowMultipleDelete());
		// Off by default; the extraction benchmark turns it on to load its cohort faster.
		settings.setMassIngestionMode(properties.massIngestionModeEnabled());
		// No setFetchSizeDefaultMaximum: capping every search's fetch at max_page_size turns the
		// unpaged searches of Bulk Data export into paged ones, and every $export of more than
		// 200 resources of a type failed (HAPI-0464). Page sizes stay capped by the paging
		// provider (max_page_size), as in the official image.
		return settings;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	/** Bulk export output and other large binaries live in the database, as in the starter. */
	@Bean
	public IBinaryStorageSvc binaryStorageSvc() {
		return new DatabaseBinaryContentStorageSvcImpl();
	}

	/**
	 * HAPI's entity manager on Spring Boot's {@code spring.datasource.*} pool, with the
	 * {@code spring.jpa.properties.*} from application.yaml (dialect, schema update).
	 */
	@Bean
	@Primary
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource,
			JpaProperties jpaProperties) {
		LocalContainerEntityManagerFactoryBean factory =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		factory.setPersistenceUnitName("HAPI_PU");
		factory.setDataSource(dataSource);
		factory.setJpaPropertyMap(jpaProperties.getProperties());
		return factory;
	}

	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}

	@Bean
	public RestfulServer restfulServer(
			HapiFhirProperties properties,
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviders,
			IJpaSystemProvider systemProvider,
			BulkDataExportProvider bulkDataExportProvider,
			DatabaseBackedPagingProvider pagingProvider,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport) {
		RestfulServer server = new RestfulServer(systemDao.getContext());
		// Every resource type (with $everything, $validate, ...) and the system level ($expunge).
		server.registerProviders(resourceProviders.createProviders());
		server.registerProvider(systemProvider);
		if (properties.bulkExportEnabled()) {
			server.registerProvider(bulkDataExportProvider);
		}
		pagingProvider.setDefaultPageSize(properties.defaultPageSize());
		pagingProvider.setMaximumPageSize(properties.maxPageSize());
		server.setPagingProvider(pagingProvider);
		server.setServerConformanceProvider(new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport));
		// No server_address: links are built from each request's Host header.
		server.setServerAddressStrategy(new IncomingRequestAddressStrategy());
		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		return server;
	}

	/**
	 * How often batch2 advances its jobs ($export among them), in ms. HAPI's default, 60 s, makes
	 * a tiny export take 3-4 minutes; the test fixture passes a shorter interval (as HAPI's own
	 * integration tests do). Set before HAPI schedules the maintenance job at context refresh.
	 */
	@Bean
	public InitializingBean batch2MaintenanceInterval(
			IJobMaintenanceService jobMaintenanceService,
			@Value("${dipro.hapi.batch2-maintenance-interval-ms:60000}") long intervalMillis) {
		JobMaintenanceServiceImpl maintenance = (JobMaintenanceServiceImpl) jobMaintenanceService;
		return () -> maintenance.setScheduledJobFrequencyMillis(intervalMillis);
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer restfulServer) {
		ServletRegistrationBean<RestfulServer> registration =
				new ServletRegistrationBean<>(restfulServer, "/fhir/*");
		registration.setLoadOnStartup(1);
		return registration;
	}
}
